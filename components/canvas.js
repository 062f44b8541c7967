// A drawing canvas: the learner draws a digit with the mouse, a finger or a pen, light ink on
// black as MNIST's digits are. On each lifted stroke the picture goes to Python downscaled to
// data.size × data.size greys (0-255), as the "pixels" state; Clear sends null. The canvas
// keeps its drawing across reruns: Streamlit calls this again with the same parentElement.

const CANVASES = new WeakMap();

function setUp(parentElement, data, setStateValue) {
  const root = document.createElement("div");
  root.className = "dl-canvas";
  root.innerHTML =
    '<canvas width="280" height="280" aria-label="drawing canvas"></canvas>' +
    '<div class="dl-canvas-bar"><button type="button" class="dl-canvas-clear">Clear</button>' +
    '<span class="dl-canvas-hint">Draw one digit, large, in the middle or anywhere.</span></div>';
  parentElement.appendChild(root);
  const canvas = root.querySelector("canvas");
  const ctx = canvas.getContext("2d");
  const blank = () => {
    ctx.fillStyle = "black";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  };
  blank();
  ctx.strokeStyle = "white";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  const send = () => {
    const size = data.size || 112;
    const small = document.createElement("canvas");
    small.width = small.height = size;
    const sctx = small.getContext("2d");
    sctx.imageSmoothingEnabled = true;
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(canvas, 0, 0, size, size);
    const rgba = sctx.getImageData(0, 0, size, size).data;
    const grey = new Array(size * size);
    for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i];
    setStateValue("pixels", { size, grey });
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = at(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.01, y);
    ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x, y] = at(e);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  const lift = () => {
    if (!drawing) return;
    drawing = false;
    send();
  };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
  root.querySelector(".dl-canvas-clear").addEventListener("click", () => {
    blank();
    setStateValue("pixels", null);
  });
  return root;
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let root = CANVASES.get(parentElement);
  if (!root) {
    root = setUp(parentElement, data || {}, setStateValue);
    CANVASES.set(parentElement, root);
  }
  return () => {
    root.remove();
    CANVASES.delete(parentElement);
  };
}
