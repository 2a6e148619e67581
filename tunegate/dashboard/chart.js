// The loss chart: hand-drawn SVG, train and validation loss against the step.

const SVG = "http://www.w3.org/2000/svg"; // the SVG namespace's name, never fetched
const WIDTH = 640;
const HEIGHT = 260;
const MARGIN = { top: 14, right: 16, bottom: 34, left: 52 };
const SERIES = [
  { key: "train", label: "train loss", className: "train" },
  { key: "valid", label: "valid loss", className: "valid" },
];

function node(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== null) element.textContent = text;
  return element;
}

/** About `count` round tick values covering [low, high]. */
function ticks(low, high, count) {
  const span = high - low || 1;
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const values = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
    values.push(Number(value.toPrecision(12)));
  }
  return values;
}

/** An empty chart, to be filled by drawLossChart. */
export function createLossChart() {
  const svg = node("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "loss-chart",
    role: "img",
    "aria-label": "Training and validation loss by step",
  });
  svg.dataset.trainPoints = "0";
  svg.dataset.validPoints = "0";
  return svg;
}

/**
 * Draws `points` ([{step, train, valid}], either loss may be null) into `svg`, the x axis
 * running to `totalSteps` (or the last step when unknown).
 */
export function drawLossChart(svg, points, totalSteps) {
  svg.replaceChildren();
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const values = points.flatMap((p) => [p.train, p.valid]).filter((v) => v != null);
  const lastStep = Math.max(1, totalSteps || 0, ...points.map((p) => p.step));
  const high = values.length ? Math.max(...values) : 1;
  const low = values.length ? Math.min(0, Math.min(...values)) : 0;
  const x = (step) => MARGIN.left + (step / lastStep) * plotWidth;
  const y = (value) => MARGIN.top + plotHeight - ((value - low) / (high - low || 1)) * plotHeight;

  for (const value of ticks(low, high, 4)) {
    svg.append(node("line", { class: "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right,
                              y1: y(value), y2: y(value) }));
    svg.append(node("text", { class: "tick", x: MARGIN.left - 6, y: y(value) + 4,
                              "text-anchor": "end" }, String(value)));
  }
  for (const step of ticks(0, lastStep, 6).filter((s) => Number.isInteger(s))) {
    svg.append(node("text", { class: "tick", x: x(step), y: HEIGHT - MARGIN.bottom + 16,
                              "text-anchor": "middle" }, String(step)));
  }
  svg.append(node("line", { class: "axis", x1: MARGIN.left, x2: WIDTH - MARGIN.right,
                            y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight }));
  svg.append(node("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left,
                            y1: MARGIN.top, y2: MARGIN.top + plotHeight }));
  svg.append(node("text", { class: "label", x: MARGIN.left + plotWidth / 2, y: HEIGHT - 4,
                            "text-anchor": "middle" }, "step"));

  SERIES.forEach((series, index) => {
    const shown = points.filter((p) => p[series.key] != null);
    svg.dataset[`${series.key}Points`] = String(shown.length);
    const coordinates = shown.map((p) => `${x(p.step).toFixed(1)},${y(p[series.key]).toFixed(1)}`);
    if (shown.length > 1) {
      svg.append(node("polyline", { class: `line ${series.className}`,
                                    points: coordinates.join(" ") }));
    }
    for (const coordinate of shown.length <= 40 ? coordinates : coordinates.slice(-1)) {
      const [cx, cy] = coordinate.split(",");
      svg.append(node("circle", { class: `dot ${series.className}`, cx, cy, r: 2.5 }));
    }
    const legendX = WIDTH - MARGIN.right - 200 + index * 100;
    svg.append(node("rect", { class: `swatch ${series.className}`, x: legendX, y: MARGIN.top,
                              width: 12, height: 4 }));
    svg.append(node("text", { class: "legend", x: legendX + 16, y: MARGIN.top + 6 },
                    series.label));
  });
  if (!points.length) {
    svg.append(node("text", { class: "label", x: MARGIN.left + plotWidth / 2,
                              y: MARGIN.top + plotHeight / 2, "text-anchor": "middle" },
                    "no training steps yet"));
  }
}
