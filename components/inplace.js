// Redrawing a live chart in place (components/live.py puts this before panel.js).
//
// Plotly redraws the whole of a chart for any change: the optimizers' race redraws its 30
// contour lines (22 of its 34 ms on a 2-core laptop) to move six paths, and the playground its
// 400 points (7 ms) to recolour a 40×40 heatmap. When only the data of a chart's moving traces
// changed, and nothing that decides where or in which colours they are drawn (the same layout
// with fixed axis ranges, every other attribute the same), the new picture is written into the
// elements plotly drew: a heatmap's image, a contour's level lines, a scatter trace's line and
// its markers' positions; 1-3 ms. Anything else is drawn by Plotly.react: a chart's first
// drawing, a new trace, a range or colour scale that follows the data, a WebGL cloud that moved,
// and a chart the learner points at. Plotly's hover and its redrawing on a resize read what it
// last drew itself: a chart drawn in place is drawn anew by Plotly.react when the pointer enters
// it or plotly redrew it (from its own data, kept current).

// The attributes of a trace that may move in place, by type; every other must stay the same.
const IN_PLACE = { heatmap: ["z"], contour: ["z"], scatter: ["x", "y"] };
const movingKeys = (trace) => IN_PLACE[trace.type || "scatter"] || [];

// An array's shape, part of a trace's key: a heatmap whose grid changed is drawn anew.
const shapeOf = (values) =>
  Array.isArray(values) ? (Array.isArray(values[0]) ? `${values.length}x${values[0].length}` : "list") : values?.shape || "flat";

// What a drawing depends on, as strings compared to the last drawing's: the layout, each trace
// without its moving attributes (their shapes kept), and the moving attributes' values.
function figureKeys(data, layout) {
  return {
    layout: JSON.stringify(layout),
    traces: data.map((trace) => {
      const still = { ...trace };
      for (const key of movingKeys(trace)) still[key] = shapeOf(trace[key]);
      return JSON.stringify(still);
    }),
    values: data.map((trace) => movingKeys(trace).map((key) => JSON.stringify(trace[key] ?? null))),
  };
}

// Only a chart whose axes cannot move (no autorange, one subplot) is drawn in place later.
const fixedAxes = (layout) =>
  ["xaxis", "yaxis"].every((a) => Array.isArray(layout[a]?.range) && layout[a].autorange !== true) &&
  !Object.keys(layout).some((key) => /^[xy]axis\d/.test(key));

// Called before Plotly.react draws `data` and `layout` in full (it adds to both).
function willDrawInFull(gd, data, layout) {
  gd.__inPlace = fixedAxes(layout) ? figureKeys(data, layout) : null;
  gd.__movedInPlace = false;
  if (!gd.__watched) {
    gd.__watched = true;
    gd.addEventListener("pointerenter", () => {
      gd.__pointed = true;
      redrawIfMoved(gd);
    });
    gd.addEventListener("pointerleave", () => {
      gd.__pointed = false;
    });
  }
}

// A chart drawn in place since plotly last drew it, drawn anew from the data shown; plotly's
// `plotly_afterplot` (a resize redrew it from what it had) and the pointer call it.
function redrawIfMoved(gd) {
  if (!gd.__movedInPlace || !window.Plotly) return;
  gd.__movedInPlace = false; // the picture is the same: what it depends on (__inPlace) too
  const layout = { ...gd.layout, datarevision: `drawn in place ${performance.now()}` };
  gd.__redrawing = window.Plotly.react(gd, gd.data, layout); // (tests wait for it)
}

// Draws `data` in place over the last drawing; false when Plotly.react must draw it.
function redrawInPlace(gd, data, layout) {
  const drawn = gd.__inPlace;
  if (!drawn || !gd._fullLayout || !gd._fullData || !gd.data || gd.__pointed) return false;
  const now = figureKeys(data, layout);
  if (now.layout !== drawn.layout || now.traces.length !== drawn.traces.length) return false;
  const paints = [];
  for (let i = 0; i < data.length; i++) {
    if (now.traces[i] !== drawn.traces[i]) return false;
    if (now.values[i].every((value, k) => value === drawn.values[i][k])) continue;
    const paint = PAINTERS[data[i].type || "scatter"]?.(gd, i, data[i]);
    if (!paint) return false;
    paints.push(paint);
  }
  // Every check passed before anything is painted: a chart is never left half redrawn.
  for (const paint of paints) paint();
  data.forEach((trace, i) => {
    for (const key of movingKeys(trace)) gd.data[i][key] = trace[key];
  });
  gd.__inPlace = now;
  if (paints.length && !gd.__movedInPlace) {
    gd.__movedInPlace = true;
    if (gd.on && gd.__heard !== gd._ev) {
      // once per event emitter: Plotly.purge drops a chart's listeners with its emitter
      gd.on("plotly_afterplot", () => setTimeout(() => redrawIfMoved(gd)));
      gd.__heard = gd._ev;
    }
  }
  return true;
}

// ---------------------------------------------------------------- reading what plotly drew

const TYPED = {
  f4: Float32Array,
  f8: Float64Array,
  i1: Int8Array,
  u1: Uint8Array,
  i2: Int16Array,
  u2: Uint16Array,
  i4: Int32Array,
  u4: Uint32Array,
};

// A trace's array as plotly reads it (a list, a list of rows, or {dtype, bdata, shape}) as flat
// values, missing ones NaN, and its shape; null when it is none of these.
function decoded(spec) {
  if (Array.isArray(spec)) {
    if (!Array.isArray(spec[0])) return { values: spec.map((v) => (v === null ? NaN : v)), shape: [spec.length] };
    const cols = spec[0].length;
    if (spec.some((row) => !Array.isArray(row) || row.length !== cols)) return null;
    return { values: spec.flat().map((v) => (v === null ? NaN : v)), shape: [spec.length, cols] };
  }
  if (!spec || typeof spec.bdata !== "string" || !TYPED[spec.dtype]) return null;
  const text = atob(spec.bdata);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  const values = new TYPED[spec.dtype](bytes.buffer);
  const shape = spec.shape ? String(spec.shape).split(",").map(Number) : [values.length];
  return { values, shape };
}

// Data to pixels within the plot area, as plotly placed its elements; null unless both axes
// are numbers (linear or log) with fixed ranges and the chart has one subplot.
function axesOf(gd) {
  const full = gd._fullLayout;
  const [xa, ya] = [full.xaxis, full.yaxis];
  if (!xa || !ya || Object.keys(full._plots || {}).length !== 1) return null;
  if ([xa, ya].some((a) => !["linear", "log"].includes(a.type) || a.autorange)) return null;
  // far outside the plot (a diverged path) stays finite for SVG: the plot area clips it
  const clamp = (p) => Math.max(-1e6, Math.min(1e6, p));
  return { x: (v) => clamp(xa.c2p(v)), y: (v) => clamp(ya.c2p(v)) };
}

// The group of elements plotly drew for trace `index`: d3 bound each to the trace's calcdata.
function traceGroup(gd, selector, index) {
  for (const group of gd.querySelectorAll(selector)) if (group.__data__?.[0]?.trace?.index === index) return group;
  return null;
}

const px = (p) => `${p[0].toFixed(2)},${p[1].toFixed(2)}`;

// ---------------------------------------------------------------- heatmaps

// A colour as [r, g, b, a] (a from 0 to 1), or null for a name plotly would have to resolve.
function rgba(colour) {
  const hex = /^#([0-9a-f]{6})$/i.exec(colour);
  if (hex) return [0, 2, 4].map((k) => parseInt(hex[1].slice(k, k + 2), 16)).concat(1);
  const fn = /^rgba?\(([^)]*)\)$/.exec(String(colour).replace(/\s/g, ""));
  if (!fn) return null;
  const parts = fn[1].split(",").map(Number);
  if (parts.length < 3 || parts.some((v) => !Number.isFinite(v))) return null;
  return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
}

// Plotly's colour of a value: linear between the scale's stops over [lo, hi], clamped outside;
// a missing value transparent. Writes the pixel at `out[at]`.
function colourScale(stops, lo, hi) {
  const scale = (stops || []).map(([at, colour]) => [at, rgba(colour)]);
  if (scale.length < 2 || scale.some(([, c]) => !c) || !(hi > lo)) return null;
  return (value, out, at) => {
    if (!Number.isFinite(value)) {
      out.fill(0, at, at + 4);
      return;
    }
    const t = Math.min(1, Math.max(0, (value - lo) / (hi - lo)));
    let k = 1;
    while (k < scale.length - 1 && t > scale[k][0]) k++;
    const [a, from] = scale[k - 1];
    const [b, to] = scale[k];
    const f = b > a ? Math.min(1, Math.max(0, (t - a) / (b - a))) : 0;
    for (let c = 0; c < 3; c++) out[at + c] = Math.round(from[c] + f * (to[c] - from[c]));
    out[at + 3] = Math.round((from[3] + f * (to[3] - from[3])) * 255);
  };
}

// A heatmap with a fixed colour range, its bricks crisp or smoothed by the browser (plotly's
// own image is then one pixel per brick, stretched over the bricks' extent): a new image of the
// same size.
function heatmapPainter(gd, i, trace) {
  const full = gd._fullData[i];
  const axes = axesOf(gd);
  if (!axes || full.visible !== true || full.zauto !== false || full.xgap || full.ygap) return null;
  if (full.zsmooth && full.zsmooth !== "fast") return null; // "best": plotly's own interpolation
  if (full.reversescale || full.transpose) return null;
  const image = traceGroup(gd, ".hm", i)?.querySelector("image");
  const [z, xs, ys] = [trace.z, trace.x, trace.y].map(decoded);
  if (!image || !z || !xs || !ys || z.shape.length !== 2) return null;
  const [rows, cols] = z.shape;
  if (xs.values.length !== cols || ys.values.length !== rows) return null;
  const colour = colourScale(full.colorscale, full.zmin, full.zmax);
  if (!colour) return null;
  // the image's rows go down the screen and its columns across: flipped where the data go the
  // other way (y up, as usual)
  const flipX = axes.x(xs.values[cols - 1]) < axes.x(xs.values[0]);
  const flipY = axes.y(ys.values[rows - 1]) < axes.y(ys.values[0]);
  const pixels = new Uint8ClampedArray(rows * cols * 4);
  for (let r = 0; r < rows; r++) {
    const row = flipY ? rows - 1 - r : r;
    for (let c = 0; c < cols; c++) {
      const col = flipX ? cols - 1 - c : c;
      colour(z.values[r * cols + c], pixels, (row * cols + col) * 4);
    }
  }
  return () => {
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [cols, rows];
    canvas.getContext("2d").putImageData(new ImageData(pixels, cols, rows), 0, 0);
    const url = canvas.toDataURL("image/png");
    if (image.hasAttribute("href")) image.setAttribute("href", url);
    else image.setAttributeNS("http://www.w3.org/1999/xlink", "xlink:href", url);
  };
}

// ---------------------------------------------------------------- contour lines

// The level's line through a grid of values (marching squares, linear between grid points),
// as an SVG path of segments in pixels; `pxs` and `pys` are the grid's columns and rows placed.
function isoline(z, rows, cols, pxs, pys, level) {
  const cut = (a, b, za, zb) => a + ((level - za) / (zb - za)) * (b - a);
  let path = "";
  const segment = (p, q) => {
    path += `M${px(p)}L${px(q)}`;
  };
  for (let r = 0; r + 1 < rows; r++) {
    for (let c = 0; c + 1 < cols; c++) {
      const z00 = z[r * cols + c];
      const z01 = z[r * cols + c + 1];
      const z10 = z[(r + 1) * cols + c];
      const z11 = z[(r + 1) * cols + c + 1];
      if (!(Number.isFinite(z00) && Number.isFinite(z01) && Number.isFinite(z10) && Number.isFinite(z11))) continue;
      const [a00, a01, a10, a11] = [z00, z01, z10, z11].map((v) => v >= level);
      // where the level crosses the cell's edges, in order: row r, column c+1, row r+1, column c
      const edges = [
        a00 !== a01 ? [cut(pxs[c], pxs[c + 1], z00, z01), pys[r]] : null,
        a01 !== a11 ? [pxs[c + 1], cut(pys[r], pys[r + 1], z01, z11)] : null,
        a10 !== a11 ? [cut(pxs[c], pxs[c + 1], z10, z11), pys[r + 1]] : null,
        a00 !== a10 ? [pxs[c], cut(pys[r], pys[r + 1], z00, z10)] : null,
      ];
      const crossings = edges.filter(Boolean);
      if (crossings.length === 2) segment(crossings[0], crossings[1]);
      else if (crossings.length === 4) {
        // a saddle: the centre's side decides which corners the lines cut off
        const centre = (z00 + z01 + z10 + z11) / 4 >= level;
        if (centre === a00) {
          segment(edges[0], edges[1]);
          segment(edges[2], edges[3]);
        } else {
          segment(edges[0], edges[3]);
          segment(edges[1], edges[2]);
        }
      }
    }
  }
  return path;
}

// A contour of lines alone at fixed levels (the playground's P = 0.5): each level's line anew,
// written into the first line plotly drew for it (its style kept), the others emptied.
function contourPainter(gd, i, trace) {
  const full = gd._fullData[i];
  const axes = axesOf(gd);
  const spec = full.contours || {};
  if (!axes || full.visible !== true || full.autocontour !== false || full.transpose) return null;
  if (spec.coloring !== "none" || spec.showlabels || spec.type !== "levels") return null;
  const levels = [];
  const step = spec.size > 0 ? spec.size : Infinity;
  for (let level = spec.start; level <= spec.end + 1e-9 * Math.abs(spec.end) && levels.length <= 100; level += step) {
    levels.push(level);
  }
  const groups = traceGroup(gd, ".contour", i)?.querySelectorAll(".contourlevel") || [];
  const lines = [...groups].map((g) => [...g.querySelectorAll("path.openline, path.closedline")]);
  if (!levels.length || lines.length !== levels.length || lines.some((paths) => !paths.length)) return null;
  const [z, xs, ys] = [trace.z, trace.x, trace.y].map(decoded);
  if (!z || !xs || !ys || z.shape.length !== 2) return null;
  const [rows, cols] = z.shape;
  if (xs.values.length !== cols || ys.values.length !== rows) return null;
  const pxs = Array.from(xs.values, axes.x);
  const pys = Array.from(ys.values, axes.y);
  const paths = levels.map((level) => isoline(z.values, rows, cols, pxs, pys, level));
  return () =>
    lines.forEach(([first, ...rest], k) => {
      first.setAttribute("d", paths[k]);
      first.style.strokeLinecap = "round"; // the line is drawn in segments: no notch where two meet
      for (const extra of rest) extra.setAttribute("d", "");
    });
}

// ---------------------------------------------------------------- scatter traces (SVG)

// A line and its markers (the optimizers' paths and where each stands now; a GAN's arrows, a
// line broken by gaps): the line's path anew, each marker moved.
function scatterPainter(gd, i, trace) {
  const full = gd._fullData[i];
  const axes = axesOf(gd);
  const mode = full.mode || "";
  if (!axes || full.visible !== true || full.fill !== "none" || mode.includes("text")) return null;
  if (full.error_x?.visible || full.error_y?.visible) return null;
  const group = traceGroup(gd, ".scatterlayer .trace", i);
  const [xs, ys] = [trace.x, trace.y].map(decoded);
  if (!group || !xs || !ys || xs.values.length !== ys.values.length) return null;
  const points = [];
  let path = ""; // the line: a gap (a missing value) breaks it, as plotly draws it
  let pen = "M";
  for (let k = 0; k < xs.values.length; k++) {
    const [x, y] = [xs.values[k], ys.values[k]];
    if (Number.isFinite(x) && Number.isFinite(y)) {
      points.push([axes.x(x), axes.y(y)]);
      path += pen + px(points[points.length - 1]);
      pen = "L";
    } else pen = "M";
  }
  const paints = [];
  if (mode.includes("lines")) {
    // plotly draws each unbroken piece as a path of its own: the first takes them all
    const [line, ...rest] = group.querySelectorAll("path.js-line");
    if (full.line.shape !== "linear" || full.connectgaps || !line) return null;
    paints.push(() => {
      line.setAttribute("d", path);
      for (const extra of rest) extra.setAttribute("d", "");
    });
  }
  if (mode.includes("markers")) {
    const markers = [...group.querySelectorAll("path.point")];
    const alike = !["color", "size", "symbol", "opacity"].some((key) => typeof full.marker?.[key] === "object");
    // a curve's markers all alike may grow in number (copies of the last); others may not
    if (markers.length !== points.length && !(alike && markers.length)) return null;
    paints.push(() => {
      const parent = markers[0].parentNode;
      while (markers.length < points.length) markers.push(parent.appendChild(markers[markers.length - 1].cloneNode()));
      while (markers.length > points.length) markers.pop().remove();
      markers.forEach((m, k) => m.setAttribute("transform", `translate(${px(points[k])})`));
    });
  }
  return () => paints.forEach((paint) => paint());
}

// ---------------------------------------------------------------- growing curves

// A live curve's axes: plotly's autorange moves them with every new point, so a growing curve
// could only be redrawn in full. The panel fixes them instead, as tight as plotly would place
// the first points, and moves an axis only when a curve leaves it, then with HEADROOM (a share
// of the data's span) on that side: a curve of a thousand steps is redrawn in full ~25 times,
// in place otherwise. The final figure (the page's) has plotly's autorange.
const HEADROOM = 1 / 3;
const Y_PAD = 0.05; // plotly pads a line's values by about this share of their span

// `layout` with both axes' ranges fixed (unless the figure fixed them, or an axis is not
// numbers: then as it is), from the data and the chart's last ranges.
function withGrowingAxes(gd, data, layout) {
  const ranges = {};
  const fixed = { ...layout };
  for (const key of ["x", "y"]) {
    const axis = layout[`${key}axis`] || {};
    if (Array.isArray(axis.range) || axis.autorange === false) continue;
    if (axis.type && axis.type !== "linear" && axis.type !== "log") return layout;
    const log = axis.type === "log";
    const extent = extentOf(data, key, log);
    if (!extent) return layout;
    const last = gd.__ranges?.[key];
    const range = last?.log === log ? grown(last.range, extent, !log) : firstRange(extent, key === "y");
    ranges[key] = { log, range };
    fixed[`${key}axis`] = { ...axis, range: [...range], autorange: false }; // plotly may write into it
  }
  gd.__ranges = ranges;
  return fixed;
}

// The lowest and highest value of the traces' `key` (log10 of them on a log axis), or null
// when there is none, or values plotly would place otherwise (dates, categories).
function extentOf(data, key, log) {
  let [lo, hi] = [Infinity, -Infinity];
  for (const trace of data) {
    if (trace.visible === false) continue;
    const values = decoded(trace[key])?.values;
    if (!values) return null;
    for (const value of values) {
      if (typeof value !== "number") return null;
      const at = log ? Math.log10(value) : value;
      if (Number.isFinite(at)) [lo, hi] = [Math.min(lo, at), Math.max(hi, at)];
    }
  }
  return hi >= lo ? [lo, hi] : null;
}

function firstRange([lo, hi], pad) {
  const span = hi - lo || Math.abs(hi) || 1;
  if (hi === lo) return [lo - span / 2, hi + span / 2];
  return pad ? [lo - Y_PAD * span, hi + Y_PAD * span] : [lo, hi];
}

// Grown past [lo, hi] where the data left `range`; room made for values of one sign (a falling
// loss) ends just past zero, as plotly would pad it.
function grown(range, [lo, hi], signed) {
  const span = hi - lo || Math.abs(hi) || 1;
  let [low, high] = [lo < range[0] ? lo - HEADROOM * span : range[0], hi > range[1] ? hi + HEADROOM * span : range[1]];
  if (signed && lo >= 0) low = Math.min(range[0], Math.max(low, -Y_PAD * span));
  if (signed && hi <= 0) high = Math.max(range[1], Math.min(high, Y_PAD * span));
  return low === range[0] && high === range[1] ? range : [low, high];
}

const PAINTERS = { heatmap: heatmapPainter, contour: contourPainter, scatter: scatterPainter };
