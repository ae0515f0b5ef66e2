//! The charts of one result: real wealth by year as a fan (percentile bands around the
//! median), the share of scenarios depleted by each year, the distribution of real terminal
//! wealth, and real spending by year (the fan again, for the variable withdrawal strategies).

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;
use portfolio_engine::SimulationResult;
use portfolio_engine::result::{Histogram as Bins, PercentileSeries};

use super::{
    BAND_INNER, BAND_MIDDLE, BAND_OUTER, BARS, ChartError, Described, GRID, MEDIAN, NEUTRAL, RISK,
    compact, err, label_style, legend, percent, render,
};

/// Real wealth at each year end: p5–p95, p10–p90 and p25–p75 bands and the median.
pub(crate) fn fan(result: &SimulationResult) -> Result<String, ChartError> {
    let p = &result.percentiles;
    let years = &result.years;
    let last = years.len().saturating_sub(1);
    let desc = if years.is_empty() {
        "No years to show.".to_owned()
    } else {
        format!(
            "Median real wealth is {} at the start and {} at the end of year {}. At the horizon \
             90 % of scenarios end between {} and {}, and half between {} and {}.",
            compact(p.p50[0]),
            compact(p.p50[last]),
            years[last],
            compact(p.p5[last]),
            compact(p.p95[last]),
            compact(p.p25[last]),
            compact(p.p75[last]),
        )
    };
    let about = Described { id: "fan", title: "Real wealth by year (today's money)".into(), desc };
    render(&about, |root| bands(root, years, p, "Real wealth (today's money)"))
}

/// Real spending in each simulated year, as a fan like [`fan`].
pub(crate) fn spending(result: &SimulationResult) -> Result<String, ChartError> {
    let s = &result.spending_percentiles;
    let p = &s.percentiles;
    let last = s.years.len().saturating_sub(1);
    let desc = if s.years.is_empty() {
        "No years to show.".to_owned()
    } else {
        format!(
            "Median real yearly spending is {} in year {} and {} in year {}. In the last year \
             90 % of scenarios spend between {} and {}.",
            compact(p.p50[0]),
            s.years[0],
            compact(p.p50[last]),
            s.years[last],
            compact(p.p5[last]),
            compact(p.p95[last]),
        )
    };
    let about = Described { id: "spending", title: "Real spending by year".into(), desc };
    render(&about, |root| bands(root, &s.years, p, "Real spending per year"))
}

fn bands(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    years: &[u32],
    p: &PercentileSeries,
    y_desc: &str,
) -> Result<(), String> {
    let x0 = years.first().copied().unwrap_or(0) as f64;
    let x1 = (years.last().copied().unwrap_or(1) as f64).max(x0 + 1.0);
    let top = p.p95.iter().chain(&p.p50).copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.05 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("Year")
        .y_desc(y_desc)
        .x_labels(10)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| compact(*v))
        .label_style(label_style())
        .axis_desc_style(label_style())
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .draw()
        .map_err(err)?;
    let xs = || years.iter().map(|&y| y as f64);
    for (lo, hi, colour, name) in [
        (&p.p5, &p.p95, BAND_OUTER, "5th–95th percentile"),
        (&p.p10, &p.p90, BAND_MIDDLE, "10th–90th"),
        (&p.p25, &p.p75, BAND_INNER, "25th–75th"),
    ] {
        let outline: Vec<(f64, f64)> =
            xs().zip(hi.iter().copied()).chain(xs().rev().zip(lo.iter().rev().copied())).collect();
        chart
            .draw_series(std::iter::once(Polygon::new(outline, colour.filled())))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()));
    }
    chart
        .draw_series(LineSeries::new(xs().zip(p.p50.iter().copied()), MEDIAN.stroke_width(3)))
        .map_err(err)?
        .label("Median")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], MEDIAN.stroke_width(3)));
    legend(&mut chart, emptier_upper_corner(&p.p95))
}

/// The upper corner the bands leave free: the legend box covers the first or the last third
/// of the years, and wealth that falls is highest on the left, wealth that grows on the right.
fn emptier_upper_corner(top: &[f64]) -> SeriesLabelPosition {
    let third = top.len().div_ceil(3);
    let highest =
        |values: &[f64]| values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    if highest(&top[..third]) > highest(&top[top.len() - third..]) {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::UpperLeft
    }
}

/// The cumulative share of scenarios depleted by each year end.
pub(crate) fn depletion(result: &SimulationResult) -> Result<String, ChartError> {
    let years = &result.years;
    let share = &result.depletion_probability_by_year;
    let last = share.len().saturating_sub(1);
    let desc = match share.last() {
        None => "No years to show.".to_owned(),
        Some(&0.0) => {
            format!("No scenario is depleted within the {} years.", years.get(last).unwrap_or(&0))
        }
        Some(&end) => {
            let first = share.iter().position(|&s| s > 0.0).unwrap_or(last);
            // The year the share reaches its end: when that is early, the middle year's figure
            // would only repeat it ("100 % by year 15" of plans that all ran out in year 1).
            let settled = share.iter().position(|&s| s >= end).unwrap_or(last);
            let mid = last / 2;
            if settled <= mid {
                return depletion_chart(
                    years,
                    share,
                    format!(
                        "The first depletions happen in year {}; {} of scenarios are depleted \
                         by the end of year {}, and none after that.",
                        years.get(first).unwrap_or(&0),
                        percent(end),
                        years.get(settled).unwrap_or(&0),
                    ),
                );
            }
            format!(
                "The first depletions happen in year {}. {} of scenarios are depleted by year \
                 {} and {} by the end of year {}.",
                years.get(first).unwrap_or(&0),
                percent(share[mid]),
                years.get(mid).unwrap_or(&0),
                percent(end),
                years.get(last).unwrap_or(&0),
            )
        }
    };
    depletion_chart(years, share, desc)
}

fn depletion_chart(years: &[u32], share: &[f64], desc: String) -> Result<String, ChartError> {
    let about =
        Described { id: "depletion", title: "Share of scenarios depleted by year".into(), desc };
    render(&about, |root| {
        let x1 = (years.last().copied().unwrap_or(1) as f64).max(1.0);
        let top = share.iter().copied().fold(0.0, f64::max) * 100.0;
        let top = (top * 1.1).clamp(5.0, 100.0);
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(84)
            .build_cartesian_2d(0.0..x1, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("Year")
            .y_desc("Depleted by then")
            .x_labels(10)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0} %"))
            .label_style(label_style())
            .axis_desc_style(label_style())
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .draw()
            .map_err(err)?;
        let points = years.iter().zip(share).map(|(&y, &s)| (y as f64, s * 100.0));
        chart
            .draw_series(
                AreaSeries::new(points, 0.0, RISK.mix(0.18)).border_style(RISK.stroke_width(3)),
            )
            .map_err(err)?;
        Ok(())
    })
}

/// Scenarios by real terminal wealth: those left with nothing (the depleted, and any that
/// survived at exactly zero), equal-width bins up to the 99th percentile, and those above it.
pub(crate) fn terminal(result: &SimulationResult) -> Result<String, ChartError> {
    let h = &result.terminal.histogram;
    let total: u64 = h.depleted + h.above + h.counts.iter().sum::<u64>();
    let top = h.edges.last().copied().unwrap_or(0.0);
    let busiest = h.counts.iter().enumerate().max_by_key(|(_, c)| **c).map(|(i, _)| i);
    if total > 0 && h.depleted == total {
        let desc = format!("All {total} scenarios end with nothing left.");
        let about = Described { id: "terminal", title: "Real terminal wealth".into(), desc };
        return render(&about, |root| histogram(root, h));
    }
    let desc = format!(
        "Of {total} scenarios, {} end with nothing left and {} end at or above {} (the 99th \
         percentile of those with wealth left). {}Mean real terminal wealth is {}, the median {}.",
        h.depleted,
        h.above,
        compact(top),
        match busiest {
            Some(i) if h.counts[i] > 0 => format!(
                "The most common range is {} to {} ({} scenarios). ",
                compact(h.edges[i]),
                compact(h.edges[i + 1]),
                h.counts[i]
            ),
            _ => String::new(),
        },
        compact(result.terminal.mean),
        compact(result.terminal.p50),
    );
    let about = Described { id: "terminal", title: "Real terminal wealth".into(), desc };
    render(&about, |root| histogram(root, h))
}

fn histogram(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    h: &Bins,
) -> Result<(), String> {
    let n = h.counts.len() as u32;
    // Segment 0 is "nothing left", 1..=n the bins, n + 1 "above the last edge".
    let highest = h.counts.iter().copied().chain([h.depleted, h.above]).max().unwrap_or(0).max(1);
    let label = |i: u32| -> String {
        match i {
            0 => "0".to_owned(),
            i if i > n => format!("≥{}", compact(h.edges.last().copied().unwrap_or(0.0))),
            i => {
                let i = i as usize;
                compact((h.edges[i - 1] + h.edges[i]) / 2.0)
            }
        }
    };
    let mut chart = ChartBuilder::on(root)
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(84)
        .build_cartesian_2d((0u32..n + 1).into_segmented(), 0u64..highest + highest / 10 + 1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("Real terminal wealth (today's money)")
        .y_desc("Scenarios")
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|v| match v {
            SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => label(*i),
            SegmentValue::Last => String::new(),
        })
        .label_style(label_style())
        .axis_desc_style(label_style())
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .draw()
        .map_err(err)?;
    let colour_of = move |i: u32| match i {
        0 => RISK,
        i if i > n => NEUTRAL,
        _ => BARS,
    };
    let data = std::iter::once((0, h.depleted))
        .chain(h.counts.iter().enumerate().map(|(i, &c)| (i as u32 + 1, c)))
        .chain(std::iter::once((n + 1, h.above)));
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .margin(1)
                .style_func(move |x, _| {
                    let i = match x {
                        SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => *i,
                        SegmentValue::Last => n + 1,
                    };
                    colour_of(i).filled()
                })
                .data(data.map(|(i, c)| (SegmentValue::Exact(i), c))),
        )
        .map_err(err)?;
    // Legend entries only; the bars above are drawn once.
    for (name, colour) in [
        (format!("Nothing left ({})", h.depleted), RISK),
        ("Scenarios by wealth".to_owned(), BARS),
        (format!("Above the 99th percentile ({})", h.above), NEUTRAL),
    ] {
        chart
            .draw_series(std::iter::empty::<Rectangle<(SegmentValue<u32>, u64)>>())
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portfolio_engine::result::{SpendingPercentiles, TerminalWealth};

    fn series(n: usize, scale: f64) -> PercentileSeries {
        let col = |k: f64| (0..n).map(|i| scale * k * (1.0 + i as f64 / 10.0)).collect();
        PercentileSeries {
            p5: col(0.2),
            p10: col(0.4),
            p25: col(0.7),
            p50: col(1.0),
            p75: col(1.3),
            p90: col(1.7),
            p95: col(2.0),
        }
    }

    #[test]
    fn the_legend_goes_to_the_upper_corner_the_bands_leave_free() {
        let falling: Vec<f64> = (0..31).map(|y| 1e6 * (1.0 - y as f64 / 40.0)).collect();
        let rising: Vec<f64> = falling.iter().rev().copied().collect();
        assert!(matches!(emptier_upper_corner(&falling), SeriesLabelPosition::UpperRight));
        assert!(matches!(emptier_upper_corner(&rising), SeriesLabelPosition::UpperLeft));
        assert!(matches!(emptier_upper_corner(&[5.0]), SeriesLabelPosition::UpperLeft));
    }

    fn result() -> SimulationResult {
        let years = 30;
        SimulationResult {
            success_probability: 0.9,
            success_probability_stderr: Some(0.003),
            years: (0..=years).collect(),
            percentiles: series(years as usize + 1, 1e6),
            nominal_percentiles: series(years as usize + 1, 1.5e6),
            terminal: TerminalWealth {
                mean: 2e6,
                p5: 0.0,
                p50: 1.5e6,
                p95: 5e6,
                histogram: Bins {
                    edges: (0..=40).map(|i| i as f64 * 2e5).collect(),
                    counts: (0..40).map(|i| 40 - i).collect(),
                    depleted: 100,
                    above: 10,
                },
            },
            depletion_probability_by_year: (0..=years).map(|y| y as f64 / 300.0).collect(),
            median_depletion_year: Some(25.0),
            spending_percentiles: SpendingPercentiles {
                years: (1..=years).collect(),
                percentiles: series(years as usize, 4e4),
            },
            n_scenarios: 1000,
            scenario_months: 360_000,
            elapsed_ms: 1.0,
            engine_version: "test".into(),
            return_model: "lognormal".into(),
            assumptions_used: true,
            notes: vec![],
            historical: None,
            solve: None,
        }
    }

    /// Whether the SVG draws `text` as one label (plotters writes each on its own line).
    fn label(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    /// Writes the chart where a person can look at it, when asked to (`CHART_DUMP=dir`).
    fn dump(name: &str, svg: &str) {
        if let Some(dir) = std::env::var_os("CHART_DUMP") {
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.svg")), svg).unwrap();
        }
    }

    #[test]
    fn the_fan_chart_draws_three_bands_a_median_and_labelled_axes() {
        let svg = fan(&result()).unwrap();
        dump("fan", &svg);
        assert_eq!(svg.matches("<polygon").count(), 3, "{svg}");
        assert!(svg.contains("<polyline"), "the median line");
        for text in ["Year", "Real wealth (today&apos;s money)", "Median", "2M", "30"] {
            assert!(label(&svg, text), "missing {text}");
        }
        assert!(svg.contains("Median real wealth is 1M at the start and 4M at the end of year 30"));
    }

    #[test]
    fn the_depletion_chart_says_when_depletions_start_and_how_many_by_the_end() {
        let svg = depletion(&result()).unwrap();
        dump("depletion", &svg);
        assert!(svg.contains("The first depletions happen in year 1."), "{svg}");
        assert!(svg.contains("10.0 % by the end of year 30"));
        assert!(label(&svg, "Depleted by then"));
    }

    #[test]
    fn the_terminal_histogram_has_a_bar_per_bin_plus_the_depleted_and_the_tail() {
        let r = result();
        let svg = terminal(&r).unwrap();
        dump("terminal", &svg);
        // 42 bars and 3 legend swatches, plus the legend box and the plot background.
        let rects = svg.matches("<rect").count();
        assert!(rects >= 42 + 3, "{rects} rects");
        assert!(
            svg.contains("Of 930 scenarios, 100 end with nothing left and 10 end at or above 8M")
        );
        assert!(label(&svg, "Nothing left (100)"));
    }

    #[test]
    fn a_result_where_everything_is_depleted_still_draws() {
        let mut r = result();
        r.terminal.histogram = Bins { depleted: 1000, ..Default::default() };
        let svg = terminal(&r).unwrap();
        assert!(svg.contains("All 1000 scenarios end with nothing left."), "{svg}");
        assert!(!svg.contains("at or above"), "no wealth left to speak of: {svg}");
        // All of them in year 1: the chart says so, not "100 % by year 15".
        r.depletion_probability_by_year =
            (0..=30).map(|y| if y == 0 { 0.0 } else { 1.0 }).collect();
        let svg = depletion(&r).unwrap();
        assert!(
            svg.contains(
                "happen in year 1; 100.0 % of scenarios are depleted by the end of \
                          year 1, and none after that."
            ),
            "{svg}"
        );
        let mut r = result();
        r.depletion_probability_by_year = vec![0.0; 31];
        assert!(depletion(&r).unwrap().contains("No scenario is depleted within the 30 years."));
    }

    #[test]
    fn the_spending_chart_covers_years_one_to_the_horizon() {
        let svg = spending(&result()).unwrap();
        dump("spending", &svg);
        assert!(svg.contains("Median real yearly spending is 40k in year 1"), "{svg}");
        assert!(label(&svg, "Real spending per year"));
    }
}
