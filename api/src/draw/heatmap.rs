//! The plan explorer's chart: how a sweep's success probability changes with the plan. Two
//! axes give a heat map (one coloured cell per plan, the 90 % and 95 % contours, the current
//! plan ringed); one axis gives a line (or, for a sweep that solves, the safe spending line).
//!
//! What plotters cannot say is added as plain SVG after it has drawn: the contours (dashed and
//! solid paths with a white halo, so they read on every colour of the scale), the current
//! plan's ring, the hatching of cells not done yet, and a transparent `<rect class="cell"
//! data-index=..>` over each cell, which the page listens to for clicks and whose `<title>` is
//! the cell's tooltip. Its coordinates come from plotters' own mapping, so the two layers
//! agree to the pixel.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    BARS, ChartError, Described, GRID, MEDIAN, NEUTRAL, WIDTH, compact, err, label_style,
    legend_style, percent, render, xml_escape,
};

/// The success levels whose contours are drawn, with their SVG dash pattern (none: solid).
pub(crate) const LEVELS: [(f64, Option<&str>); 2] = [(0.90, Some("7 4")), (0.95, None)];

/// Colour of cells not done yet (with a diagonal hatch, so it is not read as a low value).
const PENDING: RGBColor = RGBColor(0xf2, 0xf2, 0xf2);
const HATCH: &str = "#8c8c8c";

/// ColorBrewer's RdYlBu, 9 classes, from 0 % (red: runs out) to 100 % (blue: lasts). A
/// diverging scale that stays apart for the common colour-vision deficiencies, and on which
/// black contour lines keep 4:1 or more.
const SCALE: [RGBColor; 9] = [
    RGBColor(0xd7, 0x30, 0x27),
    RGBColor(0xf4, 0x6d, 0x43),
    RGBColor(0xfd, 0xae, 0x61),
    RGBColor(0xfe, 0xe0, 0x90),
    RGBColor(0xff, 0xff, 0xbf),
    RGBColor(0xe0, 0xf3, 0xf8),
    RGBColor(0xab, 0xd9, 0xe9),
    RGBColor(0x74, 0xad, 0xd1),
    RGBColor(0x45, 0x75, 0xb4),
];

/// One swept field and its values, in the sweep's order.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    pub(crate) field: String,
    pub(crate) values: Vec<f64>,
}

/// The figures of a finished cell that the chart shows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    pub(crate) success: f64,
    pub(crate) safe_spending: Option<f64>,
}

/// What the chart needs of a sweep, done or not.
#[derive(Debug, Clone)]
pub(crate) struct SweepMap {
    /// One or two axes; with two, cell `i0 * len(axes[1]) + i1` has `axes[0].values[i0]` and
    /// `axes[1].values[i1]`.
    pub(crate) axes: Vec<Axis>,
    /// The cells done so far, by index.
    pub(crate) cells: BTreeMap<u32, Cell>,
    /// The current plan's value of each axis' field (`None` when it is not known).
    pub(crate) base: Vec<Option<f64>>,
    /// The target success of a sweep that solves for safe spending.
    pub(crate) target: Option<f64>,
}

impl SweepMap {
    fn total(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }
}

/// The chart of a sweep: a heat map for two axes, a line for one.
pub(crate) fn heatmap(map: &SweepMap) -> Result<String, ChartError> {
    match map.axes.as_slice() {
        [rows, cols] => grid(map, rows, cols),
        [axis] => line(map, axis),
        axes => Err(ChartError {
            chart: "heatmap",
            message: format!("a sweep has one or two axes, not {}", axes.len()),
        }),
    }
}

/// How a field's values are written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Money,
    Share,
    Years,
    Plain,
}

fn unit(field: &str) -> Unit {
    match field {
        "monthly_spending" | "starting_portfolio" => Unit::Money,
        "allocation.stocks" | "annual_fee" => Unit::Share,
        "years" => Unit::Years,
        _ => Unit::Plain,
    }
}

/// A field's name in a sentence.
fn name(field: &str) -> &str {
    match field {
        "monthly_spending" => "monthly spending",
        "allocation.stocks" => "stocks",
        "years" => "years",
        "starting_portfolio" => "starting portfolio",
        "annual_fee" => "annual fee",
        other => other,
    }
}

/// A field's axis title.
fn title(field: &str) -> String {
    match field {
        "monthly_spending" => "Monthly spending".to_owned(),
        "allocation.stocks" => "Stocks (share of portfolio)".to_owned(),
        "years" => "Years".to_owned(),
        "starting_portfolio" => "Starting portfolio".to_owned(),
        "annual_fee" => "Annual fee".to_owned(),
        other => other.to_owned(),
    }
}

/// A value of `field` as its axis labels it: `3.5k`, `60 %`, `0.25 %`, `30 y`.
pub(crate) fn axis_value(field: &str, v: f64) -> String {
    match unit(field) {
        Unit::Money => compact(v),
        // Tenths of a percent for allocations, hundredths below 1 % (fees).
        Unit::Share => {
            let p = v * 100.0;
            format!("{} %", trimmed(p, if p.abs() < 1.0 { 2 } else { 1 }))
        }
        Unit::Years => format!("{v:.0} y"),
        Unit::Plain => trimmed(v, 3),
    }
}

/// `x` with at most `digits` decimals and no trailing zeros.
fn trimmed(x: f64, digits: usize) -> String {
    let text = format!("{x:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// The colour of a success probability on the 0–100 % scale.
pub(crate) fn colour(success: f64) -> RGBColor {
    let at = if success.is_finite() { success.clamp(0.0, 1.0) } else { 0.0 } * 8.0;
    let i = (at.floor() as usize).min(7);
    let t = at - i as f64;
    let (a, b) = (SCALE[i], SCALE[i + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + t * (f64::from(y) - f64::from(x))).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A piece of a contour line, in grid coordinates: x is the column, y the row, and cell
/// centres sit at whole numbers.
pub(crate) type Segment = [(f64, f64); 2];

/// Where `z` crosses `level`: marching squares over the cell centres, with the crossing on
/// each edge placed by linear interpolation. A square with a corner not done yet is skipped;
/// a saddle (opposite corners on the same side) is settled by the mean of its corners.
pub(crate) fn contour(z: &[Vec<Option<f64>>], level: f64) -> Vec<Segment> {
    let mut out = Vec::new();
    for r in 0..z.len().saturating_sub(1) {
        let columns = z[r].len().min(z[r + 1].len());
        for c in 0..columns.saturating_sub(1) {
            // Corners in order around the square; edge k joins corner k and k + 1.
            let corners = [(c, r), (c + 1, r), (c + 1, r + 1), (c, r + 1)];
            let Some(v) = corners.iter().map(|&(x, y)| z[y][x]).collect::<Option<Vec<f64>>>()
            else {
                continue;
            };
            let high: Vec<bool> = v.iter().map(|&x| x >= level).collect();
            let cross = |k: usize| -> Option<(f64, f64)> {
                let (a, b) = (k, (k + 1) % 4);
                if high[a] == high[b] {
                    return None;
                }
                let t = (level - v[a]) / (v[b] - v[a]);
                let ((xa, ya), (xb, yb)) = (corners[a], corners[b]);
                let lerp = |p: usize, q: usize| p as f64 + t * (q as f64 - p as f64);
                Some((lerp(xa, xb), lerp(ya, yb)))
            };
            let crossings: Vec<(f64, f64)> = (0..4).filter_map(cross).collect();
            match crossings.as_slice() {
                [a, b] => out.push([*a, *b]),
                [_, _, _, _] => {
                    let centre_high = v.iter().sum::<f64>() / 4.0 >= level;
                    // Cut off each corner on the other side from the centre; corner k lies
                    // between edges k - 1 and k.
                    for k in (0..4).filter(|&k| high[k] != centre_high) {
                        if let (Some(a), Some(b)) = (cross((k + 3) % 4), cross(k)) {
                            out.push([a, b]);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Where `v` lies among `values` (in index units, interpolated between neighbours), if it is
/// within them.
fn position(values: &[f64], v: f64) -> Option<f64> {
    if let [only] = values {
        return (*only == v).then_some(0.0);
    }
    values.windows(2).enumerate().find_map(|(i, pair)| {
        let (a, b) = (pair[0], pair[1]);
        let within = (a.min(b)..=a.max(b)).contains(&v);
        within.then(|| if a == b { i as f64 } else { i as f64 + (v - a) / (b - a) })
    })
}

/// Every `step`-th index of `n` so that at most `most` labels are written.
fn thinned(n: usize, most: usize) -> impl Iterator<Item = usize> {
    let step = n.div_ceil(most.max(1)).max(1);
    (0..n).step_by(step)
}

/// How many of `labels` fit side by side in `room` pixels (about 9 px a character at the
/// labels' size, and a gap).
fn fitting(labels: &[String], room: usize) -> usize {
    let widest = labels.iter().map(|t| t.chars().count()).max().unwrap_or(1);
    (room / (widest * 9 + 12)).max(1)
}

fn path_data(points: &[(i32, i32)]) -> String {
    let mut d = String::new();
    for (k, (x, y)) in points.iter().enumerate() {
        let _ = write!(d, "{}{x} {y}", if k == 0 { "M" } else { " L" });
    }
    d
}

/// A contour (or reference line) at `level`, as a black path over a white halo.
fn level_path(out: &mut String, level: f64, dash: Option<&str>, d: &str) {
    if d.is_empty() {
        return;
    }
    let dash = dash.map(|p| format!(" stroke-dasharray=\"{p}\"")).unwrap_or_default();
    let width = if dash.is_empty() { 3 } else { 2 };
    let _ = writeln!(
        out,
        "<g class=\"contour\" data-level=\"{level}\">\
         <path d=\"{d}\" fill=\"none\" stroke=\"#ffffff\" stroke-width=\"{}\"{dash}/>\
         <path d=\"{d}\" fill=\"none\" stroke=\"#000000\" stroke-width=\"{width}\"{dash}/></g>",
        width + 3
    );
}

/// The transparent, clickable rectangle over one cell, whose title is its tooltip.
fn hit_rect(
    out: &mut String,
    index: usize,
    done: bool,
    (x0, y0): (i32, i32),
    (x1, y1): (i32, i32),
    tip: &str,
) {
    let (x, y) = (x0.min(x1), y0.min(y1));
    let (w, h) = ((x1 - x0).abs(), (y1 - y0).abs());
    let _ = writeln!(
        out,
        "<rect class=\"cell\" data-index=\"{index}\" data-done=\"{done}\" x=\"{x}\" y=\"{y}\" \
         width=\"{w}\" height=\"{h}\" fill=\"#000000\" fill-opacity=\"0\"><title>{}</title></rect>",
        xml_escape(tip)
    );
}

/// Puts `overlay` at the end of the document, above what plotters drew. The cells are drawn
/// with crisp edges: anti-aliased, neighbouring cells would show seams of the white below.
fn with_overlay(svg: String, overlay: &str) -> String {
    let svg = svg.replace("<rect ", "<rect shape-rendering=\"crispEdges\" ");
    match svg.rfind("</svg>") {
        Some(end) => format!("{}{overlay}{}", &svg[..end], &svg[end..]),
        None => svg,
    }
}

/// "monthly spending 3.5k, stocks 60 %".
fn plan_words(axes: &[&Axis], values: &[f64]) -> String {
    axes.iter()
        .zip(values)
        .map(|(a, &v)| format!("{} {}", name(&a.field), axis_value(&a.field, v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn grid(map: &SweepMap, rows: &Axis, cols: &Axis) -> Result<String, ChartError> {
    let (n_rows, n_cols) = (rows.values.len(), cols.values.len());
    let total = map.total();
    let cell_of = |r: usize, c: usize| map.cells.get(&((r * n_cols + c) as u32));
    let z: Vec<Vec<Option<f64>>> = (0..n_rows)
        .map(|r| (0..n_cols).map(|c| cell_of(r, c).map(|cell| cell.success)).collect())
        .collect();
    let values_of = |index: u32| {
        let (r, c) = (index as usize / n_cols.max(1), index as usize % n_cols.max(1));
        [
            rows.values.get(r).copied().unwrap_or(f64::NAN),
            cols.values.get(c).copied().unwrap_or(f64::NAN),
        ]
    };
    let axes = [rows, cols];
    let base_at = match (map.base.first().copied().flatten(), map.base.get(1).copied().flatten()) {
        (Some(b0), Some(b1)) => position(&rows.values, b0)
            .zip(position(&cols.values, b1))
            .map(|(y, x)| (x, y, [b0, b1])),
        _ => None,
    };

    let chart_title =
        format!("Success probability by {} and {}", name(&rows.field), name(&cols.field));
    let mut desc = format!(
        "A grid of {total} plans: {} from {} to {} (rows, bottom to top) by {} from {} to {} \
         (columns, left to right), coloured from red (0 % of scenarios last) to blue (100 %). ",
        name(&rows.field),
        axis_value(&rows.field, rows.values.first().copied().unwrap_or(0.0)),
        axis_value(&rows.field, rows.values.last().copied().unwrap_or(0.0)),
        name(&cols.field),
        axis_value(&cols.field, cols.values.first().copied().unwrap_or(0.0)),
        axis_value(&cols.field, cols.values.last().copied().unwrap_or(0.0)),
    );
    let done = map.cells.len();
    if done < total {
        let _ = write!(desc, "{done} of {total} plans are done; the rest are grey and hatched. ");
    }
    let best = map.cells.iter().max_by(|a, b| a.1.success.total_cmp(&b.1.success));
    let worst = map.cells.iter().min_by(|a, b| a.1.success.total_cmp(&b.1.success));
    if let (Some((bi, best)), Some((wi, worst))) = (best, worst) {
        let _ = write!(
            desc,
            "Highest: {} at {}. Lowest: {} at {}. ",
            percent(best.success),
            plan_words(&axes, &values_of(*bi)),
            percent(worst.success),
            plan_words(&axes, &values_of(*wi)),
        );
        let reaching = |level: f64| map.cells.values().filter(|c| c.success >= level).count();
        let _ = write!(
            desc,
            "{} plans reach 90 % (dashed line) and {} reach 95 % (solid line). ",
            reaching(0.90),
            reaching(0.95)
        );
    }
    match base_at {
        Some((_, _, values)) => {
            let _ = write!(desc, "Your plan ({}) is ringed.", plan_words(&axes, &values));
        }
        None => desc.push_str("Your plan is outside the grid."),
    }
    let about = Described { id: "heatmap", title: chart_title, desc };

    let mut overlay = String::new();
    let svg = render(&about, |root| {
        let (plot, side) = root.split_horizontally(WIDTH - 130);
        let mut chart = ChartBuilder::on(&plot)
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(84)
            .build_cartesian_2d(-0.5..n_cols as f64 - 0.5, -0.5..n_rows as f64 - 0.5)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc(title(&cols.field))
            .y_desc(title(&rows.field))
            .axis_desc_style(label_style())
            .draw()
            .map_err(err)?;
        let cells = (0..n_rows).flat_map(|r| (0..n_cols).map(move |c| (r, c))).map(|(r, c)| {
            let fill = cell_of(r, c).map_or(PENDING, |cell| colour(cell.success));
            let (x, y) = (c as f64, r as f64);
            Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], fill.filled())
        });
        chart.draw_series(cells).map_err(err)?;
        let px = |x: f64, y: f64| chart.backend_coord(&(x, y));

        // Tick labels at the cell centres, thinned to what fits.
        let below = label_style().pos(Pos::new(HPos::Center, VPos::Top));
        let texts: Vec<String> = cols.values.iter().map(|&v| axis_value(&cols.field, v)).collect();
        let room = (px(n_cols as f64 - 0.5, 0.0).0 - px(-0.5, 0.0).0).max(1) as usize;
        for c in thinned(n_cols, fitting(&texts, room)) {
            let (x, y) = px(c as f64, -0.5);
            root.draw(&Text::new(texts[c].clone(), (x, y + 6), below.clone())).map_err(err)?;
        }
        let left = label_style().pos(Pos::new(HPos::Right, VPos::Center));
        for r in thinned(n_rows, 10) {
            let (x, y) = px(-0.5, r as f64);
            let text = axis_value(&rows.field, rows.values[r]);
            root.draw(&Text::new(text, (x - 6, y), left.clone())).map_err(err)?;
        }

        for r in 0..n_rows {
            for c in 0..n_cols {
                let ((x0, y0), (x1, y1)) =
                    (px(c as f64 - 0.5, r as f64 - 0.5), px(c as f64 + 0.5, r as f64 + 0.5));
                if cell_of(r, c).is_none() {
                    let _ = writeln!(
                        overlay,
                        "<path class=\"pending\" d=\"M{x0} {y0} L{x1} {y1}\" stroke=\"{HATCH}\" stroke-width=\"1.5\"/>"
                    );
                }
            }
        }
        for (level, dash) in LEVELS {
            let d: Vec<String> = contour(&z, level)
                .iter()
                .map(|[a, b]| path_data(&[px(a.0, a.1), px(b.0, b.1)]))
                .collect();
            level_path(&mut overlay, level, dash, &d.join(" "));
        }
        if let Some((x, y, _)) = base_at {
            let (cx, cy) = px(x, y);
            let _ = writeln!(
                overlay,
                "<g class=\"current-plan\"><circle cx=\"{cx}\" cy=\"{cy}\" r=\"9\" fill=\"none\" stroke=\"#ffffff\" stroke-width=\"5\"/>\
                 <circle cx=\"{cx}\" cy=\"{cy}\" r=\"9\" fill=\"none\" stroke=\"#000000\" stroke-width=\"2.5\"/></g>"
            );
        }
        overlay.push_str("<g class=\"cells\">\n");
        for r in 0..n_rows {
            for c in 0..n_cols {
                let index = r * n_cols + c;
                let cell = cell_of(r, c);
                let words = plan_words(&axes, &[rows.values[r], cols.values[c]]);
                let tip = match cell {
                    Some(cell) => format!("{words}: {} succeed", percent(cell.success)),
                    None => format!("{words}: not done yet"),
                };
                let corner = |dx: f64, dy: f64| px(c as f64 + dx, r as f64 + dy);
                hit_rect(
                    &mut overlay,
                    index,
                    cell.is_some(),
                    corner(-0.5, 0.5),
                    corner(0.5, -0.5),
                    &tip,
                );
            }
        }
        overlay.push_str("</g>\n");
        scale_legend(&side)
    })?;
    Ok(with_overlay(svg, &overlay))
}

/// The colour bar (0–100 %) and the key to the lines, the ring and the hatching.
fn scale_legend(side: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String> {
    let (x0, x1) = (10, 30);
    let (top, bottom) = (24, 204);
    let steps = 20;
    let height = f64::from(bottom - top) / f64::from(steps);
    for k in 0..steps {
        // Step k covers k * 5 % .. (k + 1) * 5 %, drawn from the bottom up.
        let y1 = bottom - (f64::from(k) * height).round() as i32;
        let y0 = bottom - (f64::from(k + 1) * height).round() as i32;
        let fill = colour((f64::from(k) + 0.5) / f64::from(steps));
        side.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill.filled())).map_err(err)?;
    }
    side.draw(&Rectangle::new([(x0, top), (x1, bottom)], NEUTRAL.stroke_width(1))).map_err(err)?;
    let at = legend_style().pos(Pos::new(HPos::Left, VPos::Center));
    for share in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = bottom - (share * f64::from(bottom - top)).round() as i32;
        side.draw(&PathElement::new([(x1, y), (x1 + 4, y)], NEUTRAL)).map_err(err)?;
        side.draw(&Text::new(format!("{:.0} %", share * 100.0), (x1 + 8, y), at.clone()))
            .map_err(err)?;
    }
    let key = |y: i32, text: &str| side.draw(&Text::new(text.to_owned(), (40, y), at.clone()));
    // Line samples: the dashes of the 90 % line drawn as short strokes.
    for (a, b) in [(6, 13), (17, 24), (28, 34)] {
        side.draw(&PathElement::new([(a, 234), (b, 234)], BLACK.stroke_width(2))).map_err(err)?;
    }
    key(234, "90 %").map_err(err)?;
    side.draw(&PathElement::new([(6, 260), (34, 260)], BLACK.stroke_width(3))).map_err(err)?;
    key(260, "95 %").map_err(err)?;
    side.draw(&Circle::new((20, 286), 8, BLACK.stroke_width(2))).map_err(err)?;
    key(286, "Your plan").map_err(err)?;
    side.draw(&Rectangle::new([(10, 304), (30, 324)], PENDING.filled())).map_err(err)?;
    side.draw(&Rectangle::new([(10, 304), (30, 324)], GRID.stroke_width(1))).map_err(err)?;
    side.draw(&PathElement::new([(10, 304), (30, 324)], RGBColor(0x8c, 0x8c, 0x8c)))
        .map_err(err)?;
    key(314, "Not done").map_err(err)?;
    Ok(())
}

/// One axis: success probability by value, or (for a sweep that solves) the safe monthly
/// spending by value, whose success is the target by construction.
fn line(map: &SweepMap, axis: &Axis) -> Result<String, ChartError> {
    let n = axis.values.len();
    let solving = map.target.is_some();
    let figure =
        |cell: &Cell| if solving { cell.safe_spending } else { Some(cell.success * 100.0) };
    let points: Vec<(usize, f64, f64)> = map
        .cells
        .iter()
        .filter_map(|(&i, cell)| {
            let v = *axis.values.get(i as usize)?;
            Some((i as usize, v, figure(cell)?))
        })
        .collect();
    let lo = axis.values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = axis.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let top = if solving {
        let most = points.iter().map(|p| p.2).fold(0.0, f64::max);
        if most > 0.0 { most * 1.1 } else { 1.0 }
    } else {
        100.0
    };
    let base = map.base.first().copied().flatten().filter(|b| (lo..=hi).contains(b));

    let (chart_title, y_title) = match map.target {
        Some(t) => (
            format!("Safe monthly spending at {} success by {}", percent(t), name(&axis.field)),
            "Safe monthly spending".to_owned(),
        ),
        None => (
            format!("Success probability by {}", name(&axis.field)),
            "Scenarios that last".to_owned(),
        ),
    };
    let mut desc = format!(
        "{} plans: {} from {} to {}. ",
        n,
        name(&axis.field),
        axis_value(&axis.field, axis.values.first().copied().unwrap_or(0.0)),
        axis_value(&axis.field, axis.values.last().copied().unwrap_or(0.0)),
    );
    if points.len() < n {
        let _ = write!(desc, "{} of {n} are done. ", points.len());
    }
    let shown = |y: f64| if solving { compact(y) } else { percent(y / 100.0) };
    let _ = write!(
        desc,
        "{}.",
        points
            .iter()
            .map(|(_, v, y)| format!("{}: {}", axis_value(&axis.field, *v), shown(*y)))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if !solving {
        desc.push_str(" Dashed and solid lines mark 90 % and 95 %.");
    }
    if let Some(b) = base {
        let _ = write!(desc, " Your plan ({}) is marked.", axis_value(&axis.field, b));
    }
    let about = Described { id: "heatmap", title: chart_title, desc };

    let mut overlay = String::new();
    let svg = render(&about, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(84)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(6)
            .x_desc(title(&axis.field))
            .y_desc(y_title.as_str())
            .y_label_formatter(&|v| if solving { compact(*v) } else { format!("{v:.0} %") })
            .label_style(label_style())
            .axis_desc_style(label_style())
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .draw()
            .map_err(err)?;
        let colour = if solving { MEDIAN } else { BARS };
        let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.1, p.2)).collect();
        // One series, named by the y axis: no legend box to hide a point or the plan's mark.
        chart
            .draw_series(LineSeries::new(xy.iter().copied(), colour.stroke_width(3)))
            .map_err(err)?;
        chart.draw_series(xy.iter().map(|&p| Circle::new(p, 5, colour.filled()))).map_err(err)?;
        let px = |x: f64, y: f64| chart.backend_coord(&(x, y));
        let below = label_style().pos(Pos::new(HPos::Center, VPos::Top));
        let texts: Vec<String> = axis.values.iter().map(|&v| axis_value(&axis.field, v)).collect();
        let room = (px(hi, 0.0).0 - px(lo, 0.0).0).max(1) as usize;
        for i in thinned(n, fitting(&texts, room)) {
            let (x, y) = px(axis.values[i], 0.0);
            root.draw(&Text::new(texts[i].clone(), (x, y + 6), below.clone())).map_err(err)?;
        }

        if !solving {
            for (level, dash) in LEVELS {
                let ((x0, y), (x1, _)) = (px(lo, level * 100.0), px(hi, level * 100.0));
                level_path(&mut overlay, level, dash, &path_data(&[(x0, y), (x1, y)]));
                // Named at the left end, apart: 95 % above its line, 90 % below.
                let _ = writeln!(
                    overlay,
                    "<text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"13\">{:.0} %</text>",
                    x0 + 4,
                    if level >= 0.95 { y - 5 } else { y + 14 },
                    level * 100.0
                );
            }
        }
        if let Some(b) = base {
            let ((x, y0), (_, y1)) = (px(b, 0.0), px(b, top));
            let _ = writeln!(
                overlay,
                "<g class=\"current-plan\"><path d=\"M{x} {y0} L{x} {y1}\" stroke=\"#595959\" stroke-width=\"2\" stroke-dasharray=\"2 3\"/>\
                 <text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"13\">Your plan</text></g>",
                x + 4,
                y0 - 8
            );
        }
        // Bands between the midpoints of neighbouring values, each clickable as its cell.
        overlay.push_str("<g class=\"cells\">\n");
        for i in 0..n {
            let v = axis.values[i];
            let left = if i == 0 { lo } else { (axis.values[i - 1] + v) / 2.0 };
            let right = if i + 1 == n { hi } else { (axis.values[i + 1] + v) / 2.0 };
            let cell = map.cells.get(&(i as u32));
            let words = plan_words(&[axis], &[v]);
            let tip = match cell.and_then(figure) {
                Some(y) => format!("{words}: {}", shown(y)),
                None => format!("{words}: not done yet"),
            };
            hit_rect(&mut overlay, i, cell.is_some(), px(left, 0.0), px(right, top), &tip);
        }
        overlay.push_str("</g>\n");
        Ok(())
    })?;
    Ok(with_overlay(svg, &overlay))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the chart where a person can look at it, when asked to (`CHART_DUMP=dir`).
    fn dump(name: &str, svg: &str) {
        if let Some(dir) = std::env::var_os("CHART_DUMP") {
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.svg")), svg).unwrap();
        }
    }

    /// Whether the SVG draws `text` as one label (plotters writes each on its own line).
    fn label(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    fn axis(field: &str, values: &[f64]) -> Axis {
        Axis { field: field.to_owned(), values: values.to_vec() }
    }

    /// A 5 × 5 map of spending by stocks whose success falls with spending and rises with
    /// stocks, with `done` of its cells finished.
    fn map(done: usize) -> SweepMap {
        let spending = [3000.0, 3500.0, 4000.0, 4500.0, 5000.0];
        let stocks = [0.2, 0.4, 0.6, 0.8, 1.0];
        let cells = (0..25u32)
            .take(done)
            .map(|i| {
                let (r, c) = (f64::from(i / 5), f64::from(i % 5));
                (i, Cell { success: (1.0 - 0.1 * r + 0.02 * c).min(1.0), safe_spending: None })
            })
            .collect();
        SweepMap {
            axes: vec![axis("monthly_spending", &spending), axis("allocation.stocks", &stocks)],
            cells,
            base: vec![Some(4000.0), Some(0.6)],
            target: None,
        }
    }

    #[test]
    fn a_contour_of_a_plane_is_a_straight_line_at_the_right_place() {
        // z = 0.1 x + 0.05 y + 0.5 crosses 0.75 where 2x + y = 5: from (2.5, 0) to (0.5, 4).
        let z: Vec<Vec<Option<f64>>> = (0..5)
            .map(|y| (0..5).map(|x| Some(0.1 * f64::from(x) + 0.05 * f64::from(y) + 0.5)).collect())
            .collect();
        let segments = contour(&z, 0.75);
        assert!(!segments.is_empty());
        for [a, b] in &segments {
            for (x, y) in [a, b] {
                assert!((2.0 * x + y - 5.0).abs() < 1e-9, "({x}, {y}) is off the line");
            }
        }
        let ends: Vec<(f64, f64)> = segments.iter().flatten().copied().collect();
        let near = |p: (f64, f64)| {
            ends.iter().any(|e| (e.0 - p.0).abs() < 1e-9 && (e.1 - p.1).abs() < 1e-9)
        };
        assert!(near((2.5, 0.0)) && near((0.5, 4.0)), "{segments:?}");
        // One piece per square it crosses, joined end to end.
        let length: f64 =
            segments.iter().map(|[a, b]| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()).sum();
        assert!((length - (2.0f64.powi(2) + 4.0f64.powi(2)).sqrt()).abs() < 1e-9, "{length}");
    }

    #[test]
    fn a_level_the_grid_never_reaches_has_no_contour_and_missing_cells_are_skipped() {
        let z = vec![vec![Some(0.1), Some(0.2)], vec![Some(0.3), Some(0.4)]];
        assert!(contour(&z, 0.9).is_empty());
        let z = vec![vec![Some(0.1), Some(0.95)], vec![None, Some(0.95)]];
        assert!(contour(&z, 0.9).is_empty(), "the only square has a cell not done");
    }

    #[test]
    fn a_saddle_is_settled_by_the_mean_of_its_corners() {
        // High corners on one diagonal, mean 0.55 ≥ 0.5: the low corners are cut off.
        let z = vec![vec![Some(1.0), Some(0.1)], vec![Some(0.1), Some(1.0)]];
        let segments = contour(&z, 0.5);
        assert_eq!(segments.len(), 2);
        for [a, b] in segments {
            // Each piece cuts a corner of the low diagonal, (1, 0) or (0, 1).
            let mid = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
            assert!((mid.0 - mid.1).abs() > 0.5, "{a:?}–{b:?}");
        }
    }

    #[test]
    fn the_scale_runs_from_red_through_yellow_to_blue() {
        assert_eq!(colour(0.0), SCALE[0]);
        assert_eq!(colour(0.5), SCALE[4]);
        assert_eq!(colour(1.0), SCALE[8]);
        assert_eq!(colour(2.0), SCALE[8]);
        assert_eq!(colour(f64::NAN), SCALE[0]);
    }

    #[test]
    fn axis_labels_are_money_percent_or_years_by_field() {
        assert_eq!(axis_value("monthly_spending", 3500.0), "3.5k");
        assert_eq!(axis_value("starting_portfolio", 1_250_000.0), "1.25M");
        assert_eq!(axis_value("allocation.stocks", 0.6), "60 %");
        assert_eq!(axis_value("annual_fee", 0.0025), "0.25 %");
        assert_eq!(axis_value("years", 30.0), "30 y");
        assert_eq!(position(&[10.0, 20.0, 30.0], 25.0), Some(1.5));
        assert_eq!(position(&[30.0, 20.0, 10.0], 25.0), Some(0.5));
        assert_eq!(position(&[10.0, 20.0], 35.0), None);
    }

    #[test]
    fn the_heat_map_names_itself_draws_every_cell_the_contours_and_the_plan() {
        let svg = heatmap(&map(25)).unwrap();
        dump("heatmap", &svg);
        assert!(svg.contains(
            "<title id=\"heatmap-title\">Success probability by monthly spending and stocks</title>"
        ));
        assert!(svg.contains("A grid of 25 plans: monthly spending from 3k to 5k"), "{svg}");
        assert!(svg.contains("Highest: 100.0 %"));
        assert!(svg.contains("ringed"));
        assert_eq!(svg.matches("class=\"cell\"").count(), 25);
        assert_eq!(svg.matches("data-done=\"true\"").count(), 25);
        // 25 cells and 20 steps of the colour bar, at least.
        assert!(svg.matches("<rect").count() >= 25 + 20 + 25);
        for level in ["0.9", "0.95"] {
            let at = svg.find(&format!("class=\"contour\" data-level=\"{level}\"")).expect(level);
            assert!(svg[at..].contains("<path d=\"M"), "the {level} contour has a path");
        }
        assert_eq!(svg.matches("class=\"current-plan\"").count(), 1);
        assert_eq!(svg.matches("class=\"pending\"").count(), 0);
        for text in [
            "3k",
            "5k",
            "20 %",
            "100 %",
            "Monthly spending",
            "Stocks (share of portfolio)",
            "90 %",
            "95 %",
            "Your plan",
        ] {
            assert!(label(&svg, text), "missing the label {text}");
        }
        assert!(svg.contains("<title>monthly spending 4k, stocks 60 %: 84.0 % succeed</title>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn a_map_still_filling_shows_the_cells_not_done_hatched_and_says_how_many() {
        let svg = heatmap(&map(7)).unwrap();
        dump("heatmap-partial", &svg);
        assert_eq!(svg.matches("class=\"cell\"").count(), 25);
        assert_eq!(svg.matches("data-done=\"true\"").count(), 7);
        assert_eq!(svg.matches("class=\"pending\"").count(), 18);
        assert!(svg.contains("7 of 25 plans are done"));
        assert!(svg.contains("not done yet</title>"));
        let empty = heatmap(&map(0)).unwrap();
        assert!(empty.contains("0 of 25 plans are done"));
        assert!(!empty.contains("<g class=\"contour\""), "no contour without cells");
    }

    #[test]
    fn one_axis_draws_success_by_value_or_the_safe_spending_when_solving() {
        let stocks = [0.2, 0.4, 0.6, 0.8, 1.0];
        let mut m = SweepMap {
            axes: vec![axis("allocation.stocks", &stocks)],
            cells: (0..5u32)
                .map(|i| {
                    (
                        i,
                        Cell {
                            success: 0.8 + 0.04 * f64::from(i),
                            safe_spending: Some(3000.0 + 200.0 * f64::from(i)),
                        },
                    )
                })
                .collect(),
            base: vec![Some(0.6)],
            target: None,
        };
        let svg = heatmap(&m).unwrap();
        dump("sweep-line", &svg);
        assert!(svg.contains(">Success probability by stocks</title>"));
        assert!(svg.contains("20 %: 80.0 %; 40 %: 84.0 %"), "{svg}");
        assert_eq!(svg.matches("class=\"cell\"").count(), 5);
        assert_eq!(svg.matches("class=\"contour\"").count(), 2);
        assert!(label(&svg, "60 %") && label(&svg, "Stocks (share of portfolio)"));
        assert!(svg.contains("Your plan (60 %) is marked."));

        m.target = Some(0.9);
        let svg = heatmap(&m).unwrap();
        dump("sweep-solve", &svg);
        assert!(svg.contains(">Safe monthly spending at 90.0 % success by stocks</title>"));
        assert!(svg.contains("20 %: 3k; 40 %: 3.2k"), "{svg}");
        assert!(label(&svg, "Safe monthly spending"));
        assert_eq!(svg.matches("class=\"contour\"").count(), 0);
    }

    #[test]
    fn the_largest_grid_keeps_its_labels_apart_and_draws_every_cell() {
        let spending: Vec<f64> = (0..21).map(|i| 2000.0 + 150.0 * f64::from(i)).collect();
        let years: Vec<f64> = (0..21).map(|i| 20.0 + f64::from(i)).collect();
        let cells = (0..441u32)
            .map(|i| {
                let (r, c) = (f64::from(i / 21), f64::from(i % 21));
                (
                    i,
                    Cell {
                        success: (1.05 - 0.02 * r - 0.01 * c).clamp(0.0, 1.0),
                        safe_spending: None,
                    },
                )
            })
            .collect();
        let m = SweepMap {
            axes: vec![axis("monthly_spending", &spending), axis("years", &years)],
            cells,
            base: vec![Some(4000.0), Some(30.0)],
            target: None,
        };
        let svg = heatmap(&m).unwrap();
        dump("heatmap-21", &svg);
        assert_eq!(svg.matches("class=\"cell\"").count(), 441);
        // Every third column (7 labels) and every third row are labelled.
        assert!(label(&svg, "20 y") && label(&svg, "23 y") && !label(&svg, "21 y"));
        assert!(label(&svg, "2k") && label(&svg, "2.45k") && !label(&svg, "2.15k"));
        assert!(svg.contains("ringed"));
    }

    #[test]
    fn three_axes_are_refused() {
        let mut m = map(0);
        m.axes.push(axis("years", &[20.0]));
        assert!(heatmap(&m).is_err());
    }
}
