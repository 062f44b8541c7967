// The live panel: one per chapter page. It opens the run's WebSocket, draws every frame into
// stable divs with Plotly.react (a chart is never remounted while the run trains), and asks
// for the next frame only once the last one is drawn: the server keeps only the newest, so a
// slow browser skips frames instead of falling behind.
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

// The layout's rows with wildcards resolved against the parts drawn (components/views).
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

function statusText(s) {
  const step = s.total ? `step ${s.step.toLocaleString()} of ${s.total.toLocaleString()}` : "starting";
  const eta = s.eta != null ? ` · about ${Math.round(s.eta)} s left` : "";
  switch (s.state) {
    case "queued":
      return `⏳ Waiting for a free slot: position ${s.queue || 1} in the queue (${s.busy} runs training now).`;
    case "running":
      return `${s.stopping ? "Stopping" : "Training"}: ${step}${eta}`;
    case "done":
      return `✅ Done in ${s.elapsed.toFixed(1)} s.`;
    default:
      return s.message || s.state;
  }
}

class Panel {
  constructor(parent) {
    // A child of our own: the parent also holds the <style> Streamlit put there for us.
    const root = document.createElement("div");
    root.className = "dl-panel";
    root.innerHTML =
      '<div class="dl-status" data-state="idle"><div class="dl-bar"><div></div></div><span></span></div>' +
      '<div class="dl-notes"></div><div class="dl-numbers"></div><div class="dl-grid"></div>';
    parent.appendChild(root);
    root.__panel = this; // for the browser tests (they cut the connection to see it come back)
    this.root = root;
    this.status = root.querySelector(".dl-status");
    this.notes = root.querySelector(".dl-notes");
    this.numbers = root.querySelector(".dl-numbers");
    this.grid = root.querySelector(".dl-grid");
    this.boxes = new Map(); // part name -> its div, created once per run
    this.placed = ""; // the names the grid was last laid out for
    this.token = null;
    this.socket = null;
    this.frames = 0;
  }

  show(data, trigger) {
    this.trigger = trigger;
    if (data.token === this.token) return;
    this.close();
    this.token = data.token;
    this.data = data;
    this.ended = false;
    this.frames = 0;
    this.retries = 0;
    this.grid.textContent = "";
    this.boxes.clear();
    this.placed = "";
    this.root.dataset.run = data.run;
    this.root.dataset.path = data.path; // the channel's address (tests read it)
    loadPlotly(data.plotly).then(() => this.connect(data.token), (err) => this.say({ state: "failed", message: String(err) }));
  }

  connect(token) {
    if (token !== this.token || this.ended) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${this.data.path}`);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.retries = 0;
      socket.send("ready");
    };
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onclose = (event) => {
      if (socket !== this.socket || this.ended || token !== this.token) return;
      if (this.retries >= MAX_RETRIES) {
        return this.say({ state: "lost", message: "The live view lost its connection: reload the page." });
      }
      const wait = RETRY_MS[Math.min(this.retries++, RETRY_MS.length - 1)];
      setTimeout(() => this.connect(token), wait); // a dropped connection: pick the run up again
    };
  }

  async receive(socket, raw) {
    const text = typeof raw === "string" ? raw : new TextDecoder().decode(raw);
    const { parts } = JSON.parse(text);
    const drawing = [];
    const names = Object.keys(parts).filter((n) => n !== "status" && n !== "numbers");
    this.layOut(names);
    for (const name of names) {
      const part = parts[name];
      const box = this.boxes.get(name);
      if (!box) continue;
      if (part && part.data) drawing.push(window.Plotly.react(box, part.data, part.layout, CONFIG));
      else if (part && part.text !== undefined) this.drawText(box, part);
    }
    if (parts.numbers) this.drawNumbers(parts.numbers);
    if (parts.status) this.say(parts.status);
    await Promise.all(drawing);
    this.frames += 1;
    this.root.dataset.frames = String(this.frames);
    if (this.ended) {
      socket.close();
      return;
    }
    requestAnimationFrame(() => socket.readyState === WebSocket.OPEN && socket.send("ready"));
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
    this.status.lastChild.textContent = statusText(s);
    this.status.firstChild.firstChild.style.width = `${Math.round(100 * Math.min(s.progress || 0, 1))}%`;
    this.notes.textContent = (s.notes || []).join("\n");
    if (["done", "stopped", "failed", "lost"].includes(s.state) && !this.ended) {
      this.ended = true;
      this.trigger("ended", s.run); // one rerun: the page draws the final state and what needs weights
    }
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
  }

  remove() {
    this.close();
    this.root.remove();
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
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
