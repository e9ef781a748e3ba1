// graph.js: the done / running / left graph as inline SVG (stacked areas).

import { formatSeconds } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 170;
const PAD = { left: 36, right: 8, top: 8, bottom: 22 };
const LAYERS = [
  { key: "done", label: "done", class: "area-done" },
  { key: "running", label: "running", class: "area-running" },
  { key: "left", label: "left", class: "area-left" },
];

function svg(tag, attributes, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** graphSvg draws a timeline (timeline.js) as three stacked areas with a time axis. */
export function graphSvg(line) {
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": "jobs done, running and left over time", id: "progress-graph" });
  const w = WIDTH - PAD.left - PAD.right;
  const h = HEIGHT - PAD.top - PAD.bottom;
  const total = Math.max(1, line.total);
  const x = (t) => PAD.left + ((t - line.start) / (line.end - line.start)) * w;
  const y = (n) => PAD.top + h - (n / total) * h;
  let below = line.points.map(() => 0);
  for (const layer of LAYERS) {
    const above = line.points.map((p, i) => below[i] + p[layer.key]);
    const top = line.points.map((p, i) => `${x(p.t).toFixed(1)},${y(above[i]).toFixed(1)}`);
    const bottom = line.points.map((p, i) => `${x(p.t).toFixed(1)},${y(below[i]).toFixed(1)}`).reverse();
    root.append(svg("polygon", { points: [...top, ...bottom].join(" "), class: layer.class }, undefined));
    below = above;
  }
  root.append(svg("line", { x1: PAD.left, y1: PAD.top + h, x2: PAD.left + w, y2: PAD.top + h, class: "axis" }));
  root.append(svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + h, class: "axis" }));
  root.append(svg("text", { x: PAD.left - 4, y: PAD.top + 10, "text-anchor": "end", class: "tick" }, String(line.total)));
  root.append(svg("text", { x: PAD.left - 4, y: PAD.top + h, "text-anchor": "end", class: "tick" }, "0"));
  root.append(svg("text", { x: PAD.left, y: HEIGHT - 6, class: "tick" }, "0s"));
  root.append(svg("text", { x: PAD.left + w, y: HEIGHT - 6, "text-anchor": "end", class: "tick" }, formatSeconds((line.end - line.start) / 1000)));
  let legendX = PAD.left + w / 2 - 90;
  for (const layer of LAYERS) {
    root.append(svg("rect", { x: legendX, y: HEIGHT - 15, width: 10, height: 10, class: layer.class }));
    root.append(svg("text", { x: legendX + 14, y: HEIGHT - 6, class: "tick" }, layer.label));
    legendX += 64;
  }
  return root;
}
