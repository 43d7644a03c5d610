//! Bar charts drawn on the server as SVG, each with its figures as a table beside it for
//! screen readers and for copying. Written here because a chart of labelled bars is a few
//! dozen lines of SVG, which a plotting crate would bring a font stack to draw.

use maud::{Markup, html};

const WIDTH: u64 = 640;
const BAR: u64 = 18;
const GAP: u64 = 6;
const LABEL: u64 = 180;

/// A horizontal bar chart of `bars` (label, value), titled `title`, and the same figures as a
/// table with `unit` as the value's column.
pub(crate) fn bars(title: &str, unit: &str, bars: &[(String, u64)]) -> Markup {
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let height = (BAR + GAP) * bars.len() as u64 + GAP;
    let span = WIDTH - LABEL - 60;
    let id = title.bytes().filter(u8::is_ascii_alphanumeric).take(24).map(char::from).collect::<String>();
    html! {
        figure.chart aria-labelledby={ "chart-" (id) } {
            figcaption id={ "chart-" (id) } { (title) }
            @if bars.is_empty() {
                p.empty { "No figures yet." }
            } @else {
                svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (height) } width=(WIDTH) height=(height)
                    role="img" aria-label=(title) focusable="false" {
                    @for (i, (label, value)) in bars.iter().enumerate() {
                        @let y = GAP + (BAR + GAP) * i as u64;
                        @let length = (span * value).div_ceil(max);
                        text x=(LABEL - 8) y=(y + BAR - 5) text-anchor="end" class="label" { (label) }
                        rect x=(LABEL) y=(y) width=(length.max(1)) height=(BAR) class="bar" {}
                        text x=(LABEL + length + 6) y=(y + BAR - 5) class="value" { (value) }
                    }
                }
                details {
                    summary { "The figures as a table" }
                    table {
                        caption.visually-hidden { (title) }
                        thead { tr { th scope="col" { "" } th scope="col" { (unit) } } }
                        tbody { @for (label, value) in bars { tr { th scope="row" { (label) } td { (value) } } } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_the_table_holds_every_figure() {
        let svg = bars("Alerts", "alerts", &[("a".into(), 10), ("b".into(), 5)]).into_string();
        let span = WIDTH - LABEL - 60;
        assert!(svg.contains(&format!("width=\"{span}\"")), "the largest bar spans the chart: {svg}");
        assert!(svg.contains(&format!("width=\"{}\"", span / 2)), "half the value, half the length: {svg}");
        assert!(svg.contains("<th scope=\"row\">b</th><td>5</td>"), "{svg}");
        assert!(bars("None", "x", &[]).into_string().contains("No figures yet."));
    }
}
