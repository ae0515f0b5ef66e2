//! The dashboard's chart: the queue's depth by state over the last minutes, from the samples
//! in `queue_samples` (every API replica reads the same ones).

use chrono::{DateTime, Utc};
use plotters::prelude::*;
use portfolio_shared::store::stats::QueueSample;

use super::{
    BARS, ChartError, Described, GRID, MEDIAN, NEUTRAL, RISK, err, label_style, legend,
    legend_style, render,
};

const RUNNING: RGBColor = RGBColor(0x1b, 0x78, 0x37);
const SCHEDULED: RGBColor = RGBColor(0x99, 0x4c, 0x00);

/// One line of the chart: its name, colour, value and whether it is dashed.
struct Line {
    name: &'static str,
    colour: RGBColor,
    value: fn(&QueueSample) -> f64,
    dashed: bool,
}

const LINES: [Line; 5] = [
    Line { name: "Ready", colour: BARS, value: |s| s.ready as f64, dashed: false },
    Line { name: "Running", colour: RUNNING, value: |s| s.running as f64, dashed: false },
    Line { name: "Scheduled", colour: SCHEDULED, value: |s| s.scheduled as f64, dashed: true },
    Line { name: "Dead", colour: RISK, value: |s| s.dead as f64, dashed: true },
    Line {
        name: "Workers alive",
        colour: MEDIAN,
        value: |s| f64::from(s.workers_alive),
        dashed: true,
    },
];

/// Jobs by state over the `minutes` before `now`; the x axis is minutes ago.
pub(crate) fn depth(
    samples: &[QueueSample],
    now: DateTime<Utc>,
    minutes: u32,
) -> Result<String, ChartError> {
    let ago = |s: &QueueSample| -((now - s.sampled_at).num_milliseconds() as f64 / 60_000.0);
    let about = Described {
        id: "depth",
        title: format!("Queue depth over the last {minutes} minutes"),
        desc: describe(samples, minutes),
    };
    render(&about, |root| {
        let highest = samples
            .iter()
            .flat_map(|s| [s.ready, s.scheduled, s.running, s.dead, i64::from(s.workers_alive)])
            .max()
            .unwrap_or(0);
        let top = ((highest as f64) * 1.1).max(5.0);
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(72)
            .build_cartesian_2d(-(minutes as f64)..0.0, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("Minutes ago")
            .y_desc("Jobs")
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{:.0}", v.abs()))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(label_style())
            .axis_desc_style(label_style())
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .draw()
            .map_err(err)?;
        for Line { name, colour, value, dashed } in LINES {
            let points: Vec<(f64, f64)> = samples.iter().map(|s| (ago(s), value(s))).collect();
            let style = colour.stroke_width(if dashed { 2 } else { 3 });
            // The latest sample as a dot: a line needs two samples, a fresh deployment has one.
            let latest = points.last().map(|&p| Circle::new(p, 4, colour.filled()));
            let drawn = if dashed {
                chart.draw_series(DashedLineSeries::new(points, 8, 5, style))
            } else {
                chart.draw_series(LineSeries::new(points, style))
            };
            drawn.map_err(err)?.label(name).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(3))
            });
            chart.draw_series(latest).map_err(err)?;
        }
        if samples.is_empty() {
            root.draw(&Text::new(
                "No samples yet",
                ((super::WIDTH / 2) as i32 - 60, (super::HEIGHT / 2) as i32),
                legend_style().color(&NEUTRAL),
            ))
            .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

fn describe(samples: &[QueueSample], minutes: u32) -> String {
    let Some(last) = samples.last() else {
        return format!("No samples of the queue in the last {minutes} minutes.");
    };
    let ready_max = samples.iter().map(|s| s.ready).max().unwrap_or(0);
    let ready_min = samples.iter().map(|s| s.ready).min().unwrap_or(0);
    format!(
        "{} samples over the last {minutes} minutes. Ready jobs ranged from {ready_min} to \
         {ready_max}; in the latest sample {} were ready, {} running, {} scheduled and {} dead, \
         with {} workers alive.",
        samples.len(),
        last.ready,
        last.running,
        last.scheduled,
        last.dead,
        last.workers_alive,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: DateTime<Utc>, ready: i64) -> QueueSample {
        QueueSample { sampled_at: at, ready, scheduled: 1, running: 2, dead: 0, workers_alive: 2 }
    }

    #[test]
    fn the_depth_chart_draws_a_line_per_state_and_summarises_the_latest_sample() {
        let now = Utc::now();
        let samples: Vec<_> =
            (0..30).map(|i| sample(now - chrono::Duration::seconds(10 * (30 - i)), i)).collect();
        let svg = depth(&samples, now, 60).unwrap();
        if let Some(dir) = std::env::var_os("CHART_DUMP") {
            std::fs::write(std::path::Path::new(&dir).join("depth.svg"), &svg).unwrap();
        }
        assert!(
            svg.contains("30 samples over the last 60 minutes. Ready jobs ranged from 0 to 29")
        );
        assert!(svg.contains("in the latest sample 29 were ready, 2 running"));
        assert!(svg.matches("<polyline").count() >= 2, "solid lines for ready and running");
    }

    #[test]
    fn without_samples_the_chart_says_so() {
        let svg = depth(&[], Utc::now(), 60).unwrap();
        assert!(svg.contains("No samples of the queue in the last 60 minutes."));
        assert!(svg.contains("No samples yet"));
    }
}
