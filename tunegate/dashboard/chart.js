// The loss chart: hand-drawn SVG, train and validation loss against the step (a reinforcement
// job's mean reward instead: `figure`). A step's train figure is one batch's, so it jumps from
// step to step: a smoothed line shows the trend, and dashed lines where each epoch starts show
// where the data repeats.

const SVG = "http://www.w3.org/2000/svg"; // the SVG namespace's name, never fetched
const WIDTH = 640;
const HEIGHT = 260;
const MARGIN = { top: 14, right: 16, bottom: 34, left: 52 };
const SERIES = [
  { key: "train", label: "train", className: "train" },
  { key: "smooth", label: "train (smoothed)", className: "smooth" },
  { key: "valid", label: "valid", className: "valid" },
];
// The exponential moving average's weight of the past (TensorBoard's default is 0.6).
const SMOOTHING = 0.6;
// Fewer train points than this show no smoothed line: there is no trend to show yet.
const SMOOTH_FROM = 5;

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

/**
 * The train loss smoothed by an exponential moving average, debiased (so that the first
 * points are not pulled towards zero): [{step, smooth}] for the points that have a train loss.
 */
export function smoothed(points, weight = SMOOTHING) {
  let average = 0;
  let count = 0;
  return points.filter((p) => p.train != null).map((p) => {
    average = weight * average + (1 - weight) * p.train;
    count += 1;
    return { step: p.step, smooth: average / (1 - weight ** count) };
  });
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
 * running to `totalSteps` (or the last step when unknown). `showValid`: the job has a validation
 * file (else the validation series and its legend are left out); `epochs`: how many epochs the
 * steps make (their starts are marked); `emptyText`: what an empty chart says; `figure`: what
 * is drawn, "loss" or "reward" (a reinforcement job's mean reward), named in the legend.
 */
export function drawLossChart(svg, points, totalSteps,
                              { showValid = true, epochs = null, emptyText = "no training steps yet",
                                figure = "loss" } = {}) {
  svg.replaceChildren();
  svg.dataset.figure = figure;
  svg.setAttribute("aria-label", `Training and validation ${figure} by step`);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const values = points.flatMap((p) => [p.train, showValid ? p.valid : null])
    .filter((v) => v != null);
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
  drawEpochStarts(svg, epochs, totalSteps, x, plotHeight);
  svg.append(node("line", { class: "axis", x1: MARGIN.left, x2: WIDTH - MARGIN.right,
                            y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight }));
  svg.append(node("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left,
                            y1: MARGIN.top, y2: MARGIN.top + plotHeight }));
  svg.append(node("text", { class: "label", x: MARGIN.left + plotWidth / 2, y: HEIGHT - 4,
                            "text-anchor": "middle" }, "step"));

  const trainCount = points.filter((p) => p.train != null).length;
  const series = {
    train: points,
    smooth: trainCount >= SMOOTH_FROM ? smoothed(points) : [],
    valid: showValid ? points : [],
  };
  const shownSeries = SERIES.filter((s) => s.key === "train"
    || (s.key === "smooth" && series.smooth.length) || (s.key === "valid" && showValid));
  svg.dataset.trainPoints = "0";
  svg.dataset.validPoints = "0";
  svg.dataset.smoothPoints = "0";
  let legendX = WIDTH - MARGIN.right
    - shownSeries.reduce((sum, line) => sum + legendWidth(line, figure), 0);
  // A legend for lines that are not there yet would only clutter the "no steps" message.
  (points.length ? shownSeries : []).forEach((line) => {
    const shown = series[line.key].filter((p) => p[line.key] != null);
    svg.dataset[`${line.key}Points`] = String(shown.length);
    const coordinates = shown.map((p) => `${x(p.step).toFixed(1)},${y(p[line.key]).toFixed(1)}`);
    if (shown.length > 1) {
      svg.append(node("polyline", { class: `line ${line.className}`,
                                    points: coordinates.join(" ") }));
    }
    if (line.key !== "smooth") {
      for (const coordinate of shown.length <= 40 ? coordinates : coordinates.slice(-1)) {
        const [cx, cy] = coordinate.split(",");
        svg.append(node("circle", { class: `dot ${line.className}`, cx, cy, r: 2.5 }));
      }
    }
    svg.append(node("rect", { class: `swatch ${line.className}`, x: legendX, y: MARGIN.top,
                              width: 12, height: 4 }));
    svg.append(node("text", { class: "legend", x: legendX + 16, y: MARGIN.top + 6 },
                    seriesLabel(line, figure)));
    legendX += legendWidth(line, figure);
  });
  if (!points.length) {
    svg.append(node("text", { class: "label empty", x: MARGIN.left + plotWidth / 2,
                              y: MARGIN.top + plotHeight / 2, "text-anchor": "middle" },
                    emptyText));
  }
}

/** A series' legend: "train loss", "valid reward", "train (smoothed)". */
function seriesLabel(line, figure) {
  return line.key === "smooth" ? line.label : `${line.label} ${figure}`;
}

/** Room for a legend entry: its swatch, its label (11px text, about 6px a letter), a gap. */
function legendWidth(line, figure) {
  return 16 + seriesLabel(line, figure).length * 6 + 14;
}

/** A dashed line where each epoch after the first starts, labelled "epoch N". */
function drawEpochStarts(svg, epochs, totalSteps, x, plotHeight) {
  svg.dataset.epochMarks = "0";
  if (!Number.isInteger(epochs) || epochs < 2 || !totalSteps) return;
  const perEpoch = totalSteps / epochs;
  for (let epoch = 2; epoch <= epochs; epoch += 1) {
    const at = x((epoch - 1) * perEpoch);
    svg.append(node("line", { class: "epoch", x1: at, x2: at, y1: MARGIN.top + 12,
                              y2: MARGIN.top + plotHeight }));
    svg.append(node("text", { class: "tick epoch-label", x: at + 3, y: MARGIN.top + plotHeight - 4 },
                    `epoch ${epoch}`));
  }
  svg.dataset.epochMarks = String(epochs - 1);
}
