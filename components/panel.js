// The live panel: one per experiment of a page. It opens the run's WebSocket, draws every frame into
// stable divs with Plotly.react (a chart is never remounted while the run trains), and asks
// for the next frame once it has read the last: the progress line moves with every frame, while
// each chart is drawn at its turn from the newest part received (the server sends only the
// newest too), so a slow browser skips pictures instead of falling behind.
//
// Streamlit calls this function again when `data` changes, without the previous cleanup:
// everything here is idempotent, keyed on the run's token.

const PANELS = new WeakMap();
const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const RETRY_MS = [250, 500, 1000, 2000];
const MAX_RETRIES = 15; // then the run has most likely ended while this page was away

function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__dllabPlotly) {
    window.__dllabPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        window.__dllabPlotly = null;
        reject(new Error("plotly.js did not load"));
      };
      document.head.appendChild(script);
    });
  }
  return window.__dllabPlotly;
}

// The layout's rows with wildcards resolved against the parts drawn (figures/views).
function cells(layout, names) {
  const rows = [];
  for (const row of layout) {
    const resolved = [];
    for (const cell of row) {
      let [parts, width] = typeof cell === "string" ? [cell, 1] : cell;
      parts = typeof parts === "string" ? [parts] : parts;
      if (parts.length === 1 && parts[0].endsWith("*")) {
        const prefix = parts[0].slice(0, -1);
        const matching = names.filter((n) => n.startsWith(prefix));
        for (let i = 0; i < matching.length; i += 3) rows.push(matching.slice(i, i + 3).map((n) => [[n], 1]));
        continue;
      }
      const present = parts.filter((p) => names.includes(p));
      if (present.length) resolved.push([present, width]);
    }
    if (resolved.length) rows.push(resolved);
  }
  return rows;
}

// A run's states come from the server (labs/core/runner.py RunState, sent by components/live.py
// as `data.states`); the panel has three of its own: it cannot reach the server yet (and keeps
// trying), it lost its connection for good, or it was refused.
const UNREACHABLE_STATE = "unreachable";
const LOST = "lost";
const REFUSED = "refused";
// Said when a socket closes before it ever opened: no server answer reached the page.
const UNREACHABLE =
  "The live view cannot reach the server: the connection closed before it opened. Behind a proxy, " +
  "it must pass WebSocket upgrades for the live channel (…/_lab/live) as it does for /_stcore/stream.";

function statusText(s, states) {
  const step = s.total ? `step ${s.step.toLocaleString()} of ${s.total.toLocaleString()}` : "starting";
  const eta = s.eta != null ? ` · about ${Math.round(s.eta)} s left` : "";
  switch (s.state) {
    case states.QUEUED:
      if (s.held_back) {
        const runs = s.per_learner === 1 ? "one run" : `${s.per_learner} runs`;
        return `⏳ Waiting for your other run to end: on this server a learner trains ${runs} at a time.`;
      }
      return `⏳ Waiting for a free slot: position ${s.queue || 1} in the queue (${s.busy} run${s.busy === 1 ? "" : "s"} training now).`;
    case states.RUNNING:
      return `${s.stopping ? "Stopping" : "Training"}: ${step}${eta}`;
    case states.DONE:
      return `✅ ${doneWords(s)}`;
    default:
      return s.message || s.state;
  }
}

// How long a finished run took, its wait in the queue apart, and the estimate made before it
// (the same words as components/live.py done_words).
const duration = (secs) =>
  secs < 90 ? `${secs.toFixed(0)} s` : secs < 5400 ? `${(secs / 60).toFixed(0)} min` : `${(secs / 3600).toFixed(1)} h`;
const doneWords = (s) => {
  const waited = s.elapsed - s.training;
  let took = `Done in ${s.elapsed.toFixed(1)} s`;
  if (waited >= 0.5) took += `: ${waited.toFixed(1)} s in the queue, ${s.training.toFixed(1)} s training`;
  if (s.estimate != null) took += ` (estimated about ${duration(s.estimate)})`;
  return `${took}.`;
};

// Waits until the browser has painted: each chart of a run's first frame shows as it is drawn.
// After the browser's next paint, or PAINT_WAIT_MS at most: a tab that paints nothing (hidden,
// or headless Chromium, whose animation frames can stop ticking) must not stall its stream.
const PAINT_WAIT_MS = 100;
const afterPaint = (then) => {
  let done = false;
  const once = () => {
    if (!done) {
      done = true;
      then();
    }
  };
  requestAnimationFrame(() => setTimeout(once, 0));
  setTimeout(once, PAINT_WAIT_MS);
};
const nextPaint = () => new Promise((resolve) => afterPaint(resolve));
// Lets the browser handle everything waiting (a frame's message, a paint) before going on: a
// background task runs after every task of a higher priority; a timer is the fallback.
const yieldToBrowser = () =>
  window.scheduler?.postTask
    ? window.scheduler.postTask(() => {}, { priority: "background" })
    : new Promise((resolve) => setTimeout(resolve, 0));
// Curves draw in milliseconds, maps and contours in hundreds: on a first frame, curves go first.
const isCurve = (part) => part && part.data && part.data.every((t) => !t.type || t.type === "scatter");
// The progress line and the numbers change with every frame and cost nothing to draw. Charts
// cost tens of milliseconds each on a slow machine, so they take turns, each kind at most its
// share of the browser's time, in this order: the chapter's main picture (the first chart of its
// layout: the playground's boundary, the GAN's field, the optimizers' paths), which a learner
// watches move; the curves; and the other maps (a mosaic of every unit, histograms), which may
// lag. A chart whose turn has not come keeps only its newest part, drawn at its turn: the page
// stays responsive, the line moves between two drawings, and the latest state is always shown.
const SHARES = { main: 0.4, curve: 0.3, slow: 0.1 };
const MAX_LAG_MS = 500; // the longest a chart waits past its turn for the main picture's sake

// The main picture redraws many times a second, mostly in place (inplace.js): SVG points, still
// (the playground's data) or moving (the GAN's samples), cost nothing then, and WebGL ones cannot
// move in place. A cloud of thousands is still drawn with WebGL, where the browser has it: as SVG
// it would make every full redraw (a chart's first, one under the pointer) several times slower.
// Live only: the page's final chart keeps SVG points, which a learner can pick.
let webgl = null; // whether this browser draws WebGL, asked once (the context asked is let go)
const hasWebgl = () => {
  if (webgl === null) {
    try {
      const gl = document.createElement("canvas").getContext("webgl");
      webgl = !!gl;
      gl?.getExtension("WEBGL_lose_context")?.loseContext();
    } catch {
      webgl = false;
    }
  }
  return webgl;
};
// A cloud is a markers-only trace of many points (each WebGL trace costs a context of its own).
const CLOUD_POINTS = 2000;
// (TYPED: the typed arrays plotly reads, by dtype: inplace.js)
const points = (xs) =>
  Array.isArray(xs)
    ? xs.length
    : xs?.bdata
      ? Math.floor((xs.bdata.length * 3) / 4 / (TYPED[xs.dtype]?.BYTES_PER_ELEMENT || 4))
      : 0;
const isCloud = (t) =>
  (!t.type || t.type === "scatter") && t.mode === "markers" && points(t.x) >= CLOUD_POINTS;
const withGlClouds = (data) => (hasWebgl() ? data.map((t) => (isCloud(t) ? { ...t, type: "scattergl" } : t)) : data);

// The layout's first part name: the chapter's main picture.
function mainPart(layout) {
  const cell = layout.length && layout[0].length ? layout[0][0] : null;
  if (cell === null) return null;
  const parts = typeof cell === "string" ? cell : cell[0];
  return typeof parts === "string" ? parts : parts[0];
}

class Panel {
  constructor(parent) {
    // A child of our own: the parent also holds the <style> Streamlit put there for us.
    const root = document.createElement("div");
    root.className = "dl-panel";
    root.innerHTML =
      '<div class="dl-status"><div class="dl-bar"><div></div></div><span></span></div>' +
      '<div class="dl-notes"></div><div class="dl-numbers"></div><div class="dl-grid"></div>';
    parent.appendChild(root);
    root.__panel = this; // for the browser tests (they cut the connection to see it come back)
    this.root = root;
    this.status = root.querySelector(".dl-status");
    this.notes = root.querySelector(".dl-notes");
    this.numbers = root.querySelector(".dl-numbers");
    this.grid = root.querySelector(".dl-grid");
    this.boxes = new Map(); // part name -> its div, created once per run
    // A chart is as wide as its div was when drawn, and plotly's `responsive` only hears the
    // window. A div narrows without a window resize when its row gains a cell (one variant's
    // confusion arrived before the other's) or the page grows a scrollbar: resize it then.
    this.resizer = new ResizeObserver((entries) => {
      for (const { target } of entries) {
        const drawn = target._fullLayout;
        if (drawn && Math.abs(drawn.width - target.clientWidth) > 1) window.Plotly.Plots.resize(target);
      }
    });
    this.placed = ""; // the names the grid was last laid out for
    this.token = null;
    this.socket = null;
    this.run = null; // the run whose frames are drawn (null: none yet)
    this.unannounced = null; // a run the page does not know is live yet (started by a fragment)
  }

  // Called on every rerun of the page: a new token after a run ended, and which run the
  // page itself now draws as final (the panel then steps aside).
  show(data, trigger) {
    this.trigger = trigger;
    this.data = data;
    if (data.token !== this.token) {
      this.close();
      this.token = data.token;
      this.retries = 0;
      this.root.dataset.path = data.path; // the live socket's address (tests read it)
      this.root.dataset.token = data.token; // its first message, never in the URL (tests read it)
      this.gaveUp = false;
      this.trouble = false; // a problem with the connection, shown even before any run
      this.status.dataset.state = data.states.IDLE;
      this.reset(null);
      const token = data.token;
      loadPlotly(data.plotly).then(
        () => this.connect(token),
        (err) => this.say({ state: data.states.FAILED, message: String(err) }),
      );
    }
    this.showLive();
  }

  // Shown while a run is live (not yet drawn as final by the page), or while the connection has
  // a problem to tell: a hidden panel would leave the learner with nothing.
  showLive() {
    const live = this.run !== null && this.run !== this.data.final;
    this.root.classList.toggle("dl-live", live || this.trouble);
  }

  // A problem with the connection, in words, on the page. Refused or lost for good: no more
  // retries; unreachable: the panel keeps trying.
  problem(message, state) {
    if (state !== UNREACHABLE_STATE) this.gaveUp = true;
    this.trouble = true;
    this.showLive();
    this.say({ state, message });
  }

  reset(run) {
    this.run = run;
    this.ended = false;
    this.frames = 0;
    this.grid.textContent = "";
    this.numbers.textContent = "";
    this.notes.textContent = "";
    this.resizer.disconnect();
    this.boxes.clear();
    this.placed = "";
    this.pending = {}; // parts received, not drawn yet (a slow one waits for its turn)
    this.until = { curve: 0, main: 0, slow: 0 }; // no chart of a kind is redrawn before its time
    this.rounds = { main: null, curve: null, slow: null }; // each kind's parts being drawn, and their cost
    this.costs = {}; // each part's last drawing, in ms
    clearTimeout(this.timer); // a kind's next turn, for the last run
    this.revision = 0; // every drawing of a part is a new datarevision
    this.root.dataset.run = run || "";
    this.root.dataset.frames = "0";
    this.showLive();
  }

  connect(token) {
    if (token !== this.token) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${this.data.path}`);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      socket.send(token); // which run: the server checks it before it sends anything
      socket.send("ready");
      socket.send("ready"); // one frame asked ahead: the next is on its way while one is read
    };
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onclose = () => {
      if (socket === this.socket) this.root.dataset.connected = "";
      if (socket !== this.socket || this.ended || this.gaveUp || token !== this.token) return;
      if (this.retries >= MAX_RETRIES) {
        return this.problem("The live view lost its connection: reload the page.", LOST);
      }
      if (!opened) this.problem(UNREACHABLE, UNREACHABLE_STATE); // say why while it retries
      const wait = RETRY_MS[Math.min(this.retries++, RETRY_MS.length - 1)];
      setTimeout(() => this.connect(token), wait); // a dropped connection: pick the run up again
    };
  }

  async receive(socket, raw) {
    const text = typeof raw === "string" ? raw : new TextDecoder().decode(raw);
    const message = JSON.parse(text);
    if (message.refused) {
      // the server said why: retrying would only be refused again
      return this.problem(`The live view was refused: ${message.refused}`, REFUSED);
    }
    if (!this.root.dataset.connected) {
      this.retries = 0;
      this.root.dataset.connected = "1"; // accepted: benchmarks press Train once the page is ready
      if (this.trouble) {
        this.trouble = false; // it came back
        this.showLive();
      }
    }
    const { parts } = message;
    const status = parts.status;
    if (status && status.run !== this.run) {
      this.reset(status.run); // the next run, from its first frame
      // Train reran only its buttons (a fragment): now that the first frame is here, the page
      // reruns to show the run as live (the last run's final charts go, the questions know).
      const known = [this.data.live, this.data.final];
      this.unannounced = status.run !== null && !known.includes(status.run) ? status.run : null;
    }
    if (parts.numbers) this.drawNumbers(parts.numbers);
    if (status) this.say(status);
    for (const name of Object.keys(parts)) if (name !== "status" && name !== "numbers") this.pending[name] = parts[name];
    this.frames += 1;
    this.root.dataset.frames = String(this.frames);
    this.drawSoon();
    if (this.ended) {
      socket.close(); // the drawing goes on: every pending part is drawn, turn or not
      return;
    }
    // The next frame at once: the server sends it no sooner than its pace allows (STEP_SECONDS),
    // and it is handled between two charts' drawings, so the line moves at the browser's pace
    // while the charts take their turns.
    if (socket.readyState === WebSocket.OPEN) socket.send("ready");
  }

  // One drawing loop per panel, started by a frame and ended when nothing is due.
  drawSoon() {
    if (this.drawing || this.removed) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.drawing = this.drawLoop().finally(() => {
      this.drawing = null;
    });
  }

  // Charts are drawn one at a time; between two, the browser handles the frames that came (the
  // progress line and the numbers move at once) and paints. Parts never drawn go first (curves
  // first, the screen updated after each); then each kind at its turn, all of a kind's pending
  // parts in one round; everything at once when the run has ended.
  async drawLoop() {
    const firstCharts = ![...this.boxes.values()].some((box) => box.dataset.drawn);
    if (firstCharts) await nextPaint(); // a run's first numbers show before its charts
    while (!this.removed) {
      const name = this.nextPart();
      if (name === null) {
        const wait = this.nextTurn();
        if (wait !== null) this.timer = setTimeout(() => this.drawSoon(), wait);
        return;
      }
      const part = this.pending[name];
      const box = this.boxes.get(name);
      delete this.pending[name];
      const fresh = !box.dataset.drawn;
      const start = performance.now();
      if (part && part.data) {
        // A chart whose data alone moved is redrawn in place (inplace.js). Otherwise only parts
        // that changed are drawn, so each drawing is a new datarevision: Plotly.react then
        // redraws every trace instead of diffing the typed arrays ({dtype, bdata}), and a live
        // heatmap was seen keeping its first picture on the screen without it.
        const main = name === mainPart(this.data.layout) && !isCurve(part);
        const data = main ? withGlClouds(part.data) : part.data;
        const layout = isCurve(part) ? withGrowingAxes(box, data, part.layout) : part.layout;
        if (redrawInPlace(box, data, layout)) {
          box.dataset.inPlace = String(Number(box.dataset.inPlace || 0) + 1); // benches and tests count them
        } else {
          willDrawInFull(box, data, layout);
          await window.Plotly.react(box, data, { ...layout, datarevision: ++this.revision }, CONFIG);
        }
      } else if (part && part.text !== undefined) this.drawText(box, part);
      this.spent(name, part, performance.now() - start);
      box.dataset.drawings = String(Number(box.dataset.drawings || 0) + 1); // benches count them
      if (fresh) {
        box.dataset.drawn = "1";
        await nextPaint(); // a run's first charts show one by one
        if (this.unannounced) {
          this.trigger("started", this.unannounced); // after its first charts are on the screen
          this.unannounced = null;
        }
      }
      await yieldToBrowser(); // frames that came meanwhile are handled, the screen painted
    }
  }

  kind(name, part) {
    return isCurve(part) ? "curve" : name === mainPart(this.data.layout) ? "main" : "slow";
  }

  // The next part to draw, or null when none is due: a part never drawn; else, kind by kind in
  // the order of SHARES (the main picture first), the next part of that kind's round, or the
  // first of a new round if its turn has come. A round draws each of its kind's pending parts
  // once (a newer frame of a part just drawn waits for the next round), and a kind earlier in
  // the order may cut in between two of another's parts.
  nextPart() {
    const names = Object.keys(this.pending);
    this.layOut(names);
    const drawable = names.filter((n) => this.boxes.has(n));
    const fresh = drawable.filter((n) => !this.boxes.get(n).dataset.drawn);
    if (fresh.length) return fresh.find((n) => isCurve(this.pending[n])) || fresh[0];
    const now = performance.now();
    for (const kind of Object.keys(SHARES)) {
      let round = this.rounds[kind];
      if (round) {
        round.left = round.left.filter((n) => n in this.pending);
        if (!round.left.length) {
          this.charge(kind, round.spent);
          round = this.rounds[kind] = null;
        }
      }
      if (!round && (this.ended || now >= this.until[kind])) {
        const left = drawable.filter((n) => this.kind(n, this.pending[n]) === kind);
        if (left.length) round = this.rounds[kind] = { spent: 0, left };
      }
      if (round && !this.holdsUpMain(kind, round.left[0], now)) return round.left.shift();
    }
    return null;
  }

  // Whether drawing `name` (of `kind`) now would hold up the main picture's next turn: a part
  // whose last drawing took longer than is left until then waits, unless it has waited MAX_LAG_MS
  // past its own turn already. The main picture moves at its pace; a slow map may lag.
  holdsUpMain(kind, name, now) {
    if (kind === "main" || this.ended || !this.hasMainPicture()) return false;
    const lagging = now - this.until[kind] >= MAX_LAG_MS;
    return !lagging && this.until.main > now && (this.costs[name] || 0) > this.until.main - now;
  }

  hasMainPicture() {
    const box = this.boxes.get(mainPart(this.data.layout));
    return !!box?.dataset.drawn && box.dataset.kind === "main";
  }

  spent(name, part, ms) {
    this.costs[name] = ms;
    this.boxes.get(name).dataset.kind = this.kind(name, part);
    const round = this.rounds[this.kind(name, part)];
    if (round) round.spent += ms;
    else this.charge(this.kind(name, part), ms); // a part's first drawing
  }

  // A kind has drawn for `ms`: it waits so that its drawing takes its share of the browser's time.
  charge(kind, ms) {
    this.until[kind] = performance.now() + (ms * (1 - SHARES[kind])) / SHARES[kind];
  }

  // Milliseconds until a kind with pending parts has its turn (null: nothing pending); a kind
  // whose turn has come is held up by the main picture's (holdsUpMain) until that one.
  nextTurn() {
    const kinds = new Set(Object.keys(this.pending).map((n) => this.kind(n, this.pending[n])));
    if (!kinds.size) return null;
    const now = performance.now();
    const at = Math.min(...[...kinds].map((k) => (this.until[k] > now ? this.until[k] : this.until.main)));
    return Math.max(0, at - now) + 1;
  }

  layOut(names) {
    const known = new Set([...this.boxes.keys(), ...names]);
    const key = [...known].sort().join("|");
    if (key === this.placed) return;
    this.placed = key;
    for (const name of known) {
      if (!this.boxes.has(name)) {
        const box = document.createElement("div");
        box.className = "dl-part";
        box.dataset.part = name;
        this.boxes.set(name, box);
        this.resizer.observe(box);
      }
    }
    // Re-seat the same divs in (possibly new) rows: moving a chart's div keeps the chart.
    const rows = cells(this.data.layout, [...known]);
    const fresh = document.createDocumentFragment();
    for (const row of rows) {
      const rowDiv = document.createElement("div");
      rowDiv.className = "dl-row";
      for (const [parts, width] of row) {
        const column = document.createElement("div");
        column.className = "dl-cell";
        column.style.flex = `${width} 1 0`;
        for (const name of parts) column.appendChild(this.boxes.get(name));
        rowDiv.appendChild(column);
      }
      fresh.appendChild(rowDiv);
    }
    this.grid.replaceChildren(fresh);
  }

  drawNumbers(numbers) {
    if (this.numbers.children.length !== numbers.length) {
      this.numbers.innerHTML = numbers.map(() => '<div class="dl-number"><div></div><b></b></div>').join("");
    }
    numbers.forEach(([label, value], i) => {
      const card = this.numbers.children[i];
      card.firstChild.textContent = label;
      card.lastChild.textContent = value;
    });
  }

  drawText(box, part) {
    if (!box.firstChild) box.innerHTML = '<div class="dl-text-title"></div><pre class="dl-text"></pre>';
    box.firstChild.textContent = part.title || "";
    box.lastChild.textContent = part.text;
  }

  say(s) {
    this.status.dataset.state = s.state;
    this.status.lastChild.textContent = statusText(s, this.data.states);
    this.status.firstChild.firstChild.style.width = `${Math.round(100 * Math.min(s.progress || 0, 1))}%`;
    this.notes.textContent = (s.notes || []).join("\n");
    const over = [...this.data.states.ENDED, LOST, REFUSED].includes(s.state);
    if (over && !this.ended && this.run !== null && this.run !== this.data.final) {
      this.ended = true;
      this.unannounced = null; // the "ended" rerun shows it
      this.trigger("ended", s.run); // one rerun: the page draws the final state and what needs weights
    }
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
  }

  remove() {
    this.removed = true; // the drawing loop ends
    clearTimeout(this.timer);
    this.close();
    this.resizer.disconnect();
    this.root.remove();
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (data.preload) {
    // Mounted hidden on every page (components/live.py: preload): plotly.js (4.8 MB) is
    // fetched and parsed while the learner reads, not after Train.
    loadPlotly(data.plotly).catch(() => {});
    return () => {};
  }
  let panel = PANELS.get(parentElement);
  if (!panel) {
    panel = new Panel(parentElement);
    PANELS.set(parentElement, panel);
  }
  panel.show(data, setTriggerValue);
  return () => {
    panel.remove();
    PANELS.delete(parentElement);
  };
}
