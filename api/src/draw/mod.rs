//! Draws charts on the server as SVG with `plotters`, for the web frontend (a result's fan,
//! depletion, terminal-wealth and spending charts), the operators' dashboard (queue depth) and
//! the plan explorer (a sweep's map of success).
//!
//! Drawing on the server keeps the pages free of any JavaScript charting code and of any CDN:
//! the same chart is served to the page, to a script, or to a browser opening the URL. Text is
//! emitted as SVG `<text>` and laid out by the browser's fonts, so plotters needs no font
//! backend (its size estimate only reserves room for the axis labels). Every chart carries a
//! `<title>` and a `<desc>` summarising it in words, for screen readers and for anyone who
//! cannot see the picture.

pub(crate) mod heatmap;
pub(crate) mod queue;
pub(crate) mod results;

use plotters::prelude::*;

/// Size of every chart, in SVG user units; the page scales it to its column.
pub(crate) const WIDTH: u32 = 640;
pub(crate) const HEIGHT: u32 = 380;

/// Axis labels and legends (plotters' size unit; SVG gets 1/1.24 of it, ~14.5 px).
const LABEL_SIZE: u32 = 18;
const FONT: &str = "sans-serif";

// Colours chosen to read on white (graphical objects at 3:1 or more, WCAG 1.4.11) and to stay
// apart for the common colour-vision deficiencies; lines also differ in width or dashes.
pub(crate) const BAND_OUTER: RGBColor = RGBColor(0xc6, 0xdb, 0xef);
pub(crate) const BAND_MIDDLE: RGBColor = RGBColor(0x9e, 0xca, 0xe1);
pub(crate) const BAND_INNER: RGBColor = RGBColor(0x6b, 0xae, 0xd6);
pub(crate) const MEDIAN: RGBColor = RGBColor(0x08, 0x30, 0x6b);
pub(crate) const RISK: RGBColor = RGBColor(0xb2, 0x18, 0x2b);
pub(crate) const NEUTRAL: RGBColor = RGBColor(0x59, 0x59, 0x59);
pub(crate) const BARS: RGBColor = RGBColor(0x21, 0x66, 0xac);
pub(crate) const GRID: RGBColor = RGBColor(0xe6, 0xe6, 0xe6);

/// A failure to draw (never the caller's fault).
#[derive(Debug, thiserror::Error)]
#[error("drawing the {chart} chart failed: {message}")]
pub(crate) struct ChartError {
    pub(crate) chart: &'static str,
    pub(crate) message: String,
}

/// What a chart says, for assistive technology: a short title and a sentence or two.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    /// Prefix of the ids of `<title>` and `<desc>`; unique within a page.
    pub(crate) id: &'static str,
    pub(crate) title: String,
    pub(crate) desc: String,
}

/// Draws with `draw` on a fresh white canvas and returns the finished SVG document.
pub(crate) fn render<F>(about: &Described, draw: F) -> Result<String, ChartError>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let fail = |message: String| ChartError { chart: about.id, message };
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(accessible(&svg, about))
}

/// Replaces plotters' opening tag with one that names the chart (`role="img"`,
/// `aria-labelledby`) and adds `<title>` and `<desc>` as its first children.
fn accessible(svg: &str, about: &Described) -> String {
    let body = svg.find('>').map(|i| &svg[i + 1..]).unwrap_or(svg);
    let id = about.id;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" class=\"chart\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\">\n\
         <title id=\"{id}-title\">{}</title>\n<desc id=\"{id}-desc\">{}</desc>{body}",
        xml_escape(&about.title),
        xml_escape(&about.desc),
    )
}

pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An amount with three significant digits and a k/M/B/T suffix: `1.25M`, `830k`, `0`.
pub fn compact(x: f64) -> String {
    if !x.is_finite() {
        return "–".to_owned();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    let (value, suffix) = match a {
        a if a >= 1e12 => (a / 1e12, "T"),
        a if a >= 1e9 => (a / 1e9, "B"),
        a if a >= 1e6 => (a / 1e6, "M"),
        a if a >= 1e3 => (a / 1e3, "k"),
        a => (a, ""),
    };
    let digits = match value {
        v if v >= 100.0 || v == 0.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    let text = format!("{value:.digits$}");
    // 3 significant digits, without trailing zeros ("1.50M" → "1.5M").
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{sign}{text}{suffix}")
}

/// A share as a percentage with one decimal: `0.123` → `12.3 %`.
pub(crate) fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

fn label_style() -> TextStyle<'static> {
    (FONT, LABEL_SIZE).into_font().color(&BLACK)
}

fn legend_style() -> TextStyle<'static> {
    (FONT, LABEL_SIZE - 2).into_font().color(&BLACK)
}

/// The legend box every chart draws, at `position`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(NEUTRAL)
        .label_font(legend_style())
        .draw()
        .map_err(err)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_with_three_significant_digits_and_a_suffix() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(999.0), "999");
        assert_eq!(compact(1_500.0), "1.5k");
        assert_eq!(compact(1_234_567.0), "1.23M");
        assert_eq!(compact(25_000_000.0), "25M");
        assert_eq!(compact(830_000.0), "830k");
        assert_eq!(compact(-2_000.0), "-2k");
        assert_eq!(compact(3.2e12), "3.2T");
    }

    #[test]
    fn the_svg_names_itself_for_assistive_technology_and_escapes_text() {
        let about = Described { id: "t", title: "A < B".into(), desc: "x & y".into() };
        let svg = render(&about, |_| Ok(())).unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 640 380\"")
        );
        assert!(svg.contains("role=\"img\" aria-labelledby=\"t-title t-desc\""));
        assert!(svg.contains("<title id=\"t-title\">A &lt; B</title>"));
        assert!(svg.contains("<desc id=\"t-desc\">x &amp; y</desc>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
