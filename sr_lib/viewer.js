// The front end of sr_lib.viewer.VolumeViewer (an anywidget ES module).
//
// The kernel sends, per panel, the current slice as float32 (rows top to bottom) plus its
// overlay and hole mask; everything that does not need new data happens here, at once:
// crosshair, readout, window/level, colour map, zoom/pan, line profile. Positions are in mm of
// the shared field of view (FOV), so panels on coarser grids stay aligned.
//
// Mouse: click/drag sets the crosshair; right-drag or shift-drag sets window/level; wheel
// zooms at the cursor; ctrl-drag or middle-drag pans; double-click resets the view.

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
  "#17becf", "#bcbd22", "#7f7f7f"];

function floats(view) {
  if (!view) return null;
  const buffer = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  return new Float32Array(buffer);
}

function bytes(view) {
  if (!view) return null;
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(2) : v.toFixed(3);
}

function render({ model, el: root }) {
  const state = { zoom: 1, center: null, hover: null, drag: null, timer: null, images: {} };

  // ------------------------------------------------------------------ controls
  const axisSelect = el("select", { class: "srv-axis", title: "slice orientation" });
  for (const [label, value] of [["x (sagittal)", 0], ["y (coronal)", 1], ["z (axial)", 2]]) {
    axisSelect.appendChild(el("option", { value: String(value), text: label }));
  }
  const play = el("button", { class: "srv-play", title: "play through the slices", text: "▶" });
  const slider = el("input", { class: "srv-slider", type: "range", min: "0", step: "1" });
  const sliceLabel = el("span", { class: "srv-slice-label" });
  const cmapSelect = el("select", { class: "srv-cmap", title: "colour map" });
  const level = el("input", { class: "srv-level", type: "number", step: "any", title: "level (window centre)" });
  const width = el("input", { class: "srv-width", type: "number", step: "any", min: "0", title: "window width" });
  const overlaySelect = el("select", { class: "srv-overlay", title: "error overlay against the reference" });
  for (const [label, value] of [["no overlay", "none"], ["|error|", "abs"], ["signed error", "signed"],
    ["1 − SSIM", "ssim"]]) {
    overlaySelect.appendChild(el("option", { value, text: label }));
  }
  const opacity = el("input", { class: "srv-opacity", type: "range", min: "0", max: "1", step: "0.05",
    title: "overlay opacity" });
  const profileSelect = el("select", { class: "srv-profile-dir", title: "line profile through the crosshair" });
  for (const [label, value] of [["horizontal profile", "h"], ["vertical profile", "v"]]) {
    profileSelect.appendChild(el("option", { value, text: label }));
  }
  const reset = el("button", { class: "srv-reset", title: "reset zoom, pan and window", text: "reset" });
  const controls = el("div", { class: "srv-controls" }, [
    axisSelect, play, slider, sliceLabel,
    el("span", { class: "srv-sep", text: "width / level" }), width, level, cmapSelect,
    el("span", { class: "srv-sep", text: "overlay" }), overlaySelect, opacity, profileSelect, reset,
  ]);
  const panelsRow = el("div", { class: "srv-panels" });
  const readout = el("div", { class: "srv-readout" });
  const profile = el("canvas", { class: "srv-profile" });
  const wrapper = el("div", { class: "srv" }, [controls, panelsRow, readout, profile]);
  root.appendChild(wrapper);
  // Keys typed into the viewer's inputs are the viewer's: JupyterLab's command-mode shortcuts
  // (a, b, m, 1...) must not act on the notebook meanwhile.
  wrapper.addEventListener("keydown", (e) => e.stopPropagation());

  // ------------------------------------------------------------------ geometry helpers
  const grid = () => model.get("grid");
  const axis = () => model.get("axis");
  const inPlane = () => [0, 1, 2].filter((d) => d !== axis());
  const panelPx = () => model.get("panel_size");
  function panelFov(p) { return [p.fov[0], p.fov[1]]; }
  function viewCenter() {
    const g = grid(); const [h, v] = inPlane();
    if (!state.center) state.center = [g.fov[h] / 2, g.fov[v] / 2];
    return state.center;
  }
  function scale() {
    const g = grid(); const [h, v] = inPlane();
    return (panelPx() / Math.max(g.fov[h], g.fov[v])) * state.zoom;
  }
  function canvasSize() {
    const g = grid(); const [h, v] = inPlane();
    const s = panelPx() / Math.max(g.fov[h], g.fov[v]);
    return [Math.round(g.fov[h] * s), Math.round(g.fov[v] * s)];
  }
  function toCanvas(mmX, mmY, W, H) {
    const [cx, cy] = viewCenter(); const s = scale();
    return [(mmX - cx) * s + W / 2, H / 2 - (mmY - cy) * s];
  }
  function toMm(px, py, W, H) {
    const [cx, cy] = viewCenter(); const s = scale();
    return [cx + (px - W / 2) / s, cy - (py - H / 2) / s];
  }
  function valueAt(p, mmX, mmY) {
    const [fw, fh] = panelFov(p);
    if (mmX < 0 || mmY < 0 || mmX >= fw || mmY >= fh) return null;
    const col = Math.min(p.width - 1, Math.floor((mmX / fw) * p.width));
    const row = p.height - 1 - Math.min(p.height - 1, Math.floor((mmY / fh) * p.height));
    return p.values[row * p.width + col];
  }
  function worldOf(point) {
    const g = grid();
    if (!g.affine) return null;
    const ijk = point.map((mm, d) => mm / g.voxel[d] - 0.5);
    return [0, 1, 2].map((r) => g.affine[r][0] * ijk[0] + g.affine[r][1] * ijk[1] + g.affine[r][2] * ijk[2] + g.affine[r][3]);
  }

  // ------------------------------------------------------------------ panels
  let panels = [];
  function window_() { return model.get("window"); }

  function buildImage(p) {
    const luts = model.get("luts");
    const lut = luts[model.get("cmap")] || luts.gray;
    const [lo, hi] = window_();
    const span = hi > lo ? hi - lo : 1e-12;
    const kind = model.get("overlay");
    const overlayLut = luts[kind === "signed" ? "bwr" : "magma"];
    const limit = model.get("overlay_limit");
    const alpha = Number(model.get("overlay_opacity"));
    const off = document.createElement("canvas");
    off.width = p.width; off.height = p.height;
    const ctx = off.getContext("2d");
    const img = ctx.createImageData(p.width, p.height);
    const n = p.width * p.height;
    for (let i = 0; i < n; i++) {
      let t = (p.values[i] - lo) / span;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const k = Math.round(t * 255) * 3;
      let r = lut[k], g = lut[k + 1], b = lut[k + 2];
      if (p.overlay && !Number.isNaN(p.overlay[i])) {
        let u = kind === "signed" ? 0.5 + p.overlay[i] / (2 * limit) : p.overlay[i] / limit;
        u = u < 0 ? 0 : u > 1 ? 1 : u;
        const m = Math.round(u * 255) * 3;
        r = (1 - alpha) * r + alpha * overlayLut[m];
        g = (1 - alpha) * g + alpha * overlayLut[m + 1];
        b = (1 - alpha) * b + alpha * overlayLut[m + 2];
      }
      img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
    }
    if (p.mask) {  // the hole's contour: mask pixels with a 4-neighbour outside it
      const at = (x, y) => x >= 0 && y >= 0 && x < p.width && y < p.height && p.mask[y * p.width + x];
      for (let y = 0; y < p.height; y++) {
        for (let x = 0; x < p.width; x++) {
          if (at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1))) {
            const i = 4 * (y * p.width + x);
            img.data[i] = 255; img.data[i + 1] = 215; img.data[i + 2] = 0;
          }
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    return off;
  }

  function loadPanels() {
    panels = model.get("panels").map((p, i) => ({
      ...p, values: floats(p.data), overlay: floats(p.overlay), mask: bytes(p.mask), color: PALETTE[i % PALETTE.length],
    }));
    panelsRow.replaceChildren();
    const [W, H] = canvasSize();
    for (const p of panels) {
      const canvas = el("canvas", { class: "srv-canvas", "data-name": p.name });
      canvas.width = W; canvas.height = H;
      const title = el("div", { class: "srv-title" });
      title.appendChild(el("span", { class: "srv-swatch", style: `background:${p.color}` }));
      title.appendChild(el("span", { text: ` ${p.name}` }));
      const sub = el("div", { class: "srv-subtitle", text: p.subtitle || "" });
      const box = el("div", { class: "srv-panel" }, [title, sub, canvas]);
      panelsRow.appendChild(box);
      p.canvas = canvas;
      attachMouse(canvas, p);
    }
    rebuildImages();
  }

  function rebuildImages() {
    for (const p of panels) p.image = buildImage(p);
    drawAll();
  }

  function drawAll() {
    const labels = model.get("orientation") || {};
    const cross = model.get("crosshair");
    const [h, v] = inPlane();
    for (const p of panels) {
      const c = p.canvas, ctx = c.getContext("2d"), W = c.width, H = c.height;
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, H);
      ctx.imageSmoothingEnabled = false;
      const [fw, fh] = panelFov(p);
      const [x0, y0] = toCanvas(0, fh, W, H);
      const s = scale();
      ctx.drawImage(p.image, x0, y0, fw * s, fh * s);
      const [px, py] = toCanvas(cross[h], cross[v], W, H);
      ctx.strokeStyle = "rgba(0, 255, 120, 0.8)"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(px + 0.5, 0); ctx.lineTo(px + 0.5, H);
      ctx.moveTo(0, py + 0.5); ctx.lineTo(W, py + 0.5); ctx.stroke();
      ctx.fillStyle = "#ffeb3b"; ctx.font = "bold 12px sans-serif";
      ctx.textAlign = "left"; ctx.textBaseline = "middle";
      if (labels.left) ctx.fillText(labels.left, 3, H / 2);
      ctx.textAlign = "right";
      if (labels.right) ctx.fillText(labels.right, W - 3, H / 2);
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      if (labels.top) ctx.fillText(labels.top, W / 2, 3);
      ctx.textBaseline = "bottom";
      if (labels.bottom) ctx.fillText(labels.bottom, W / 2, H - 3);
    }
    drawProfile();
    writeReadout();
  }

  // ------------------------------------------------------------------ readout and profile
  function writeReadout() {
    const [h, v] = inPlane();
    const point = model.get("crosshair").slice();
    let where = "crosshair";
    if (state.hover) { point[h] = state.hover[0]; point[v] = state.hover[1]; where = "cursor"; }
    const world = worldOf(point);
    const g = grid();
    const ijk = point.map((mm, d) => Math.min(g.shape[d] - 1, Math.max(0, Math.floor(mm / g.voxel[d]))));
    const pos = world ? `(${world.map((w) => w.toFixed(1)).join(", ")}) mm scanner`
      : `(${point.map((w) => w.toFixed(1)).join(", ")}) mm`;
    const values = panels.map((p) => `${p.name} ${fmt(valueAt(p, point[h], point[v]))}`).join(" · ");
    readout.textContent = `${where} ${pos} · voxel [${ijk.join(", ")}] · ${values}`;
  }

  function drawProfile() {
    const W = panelPx() * Math.min(Math.max(panels.length, 2), 4), H = 170;
    profile.width = W; profile.height = H;
    const ctx = profile.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    if (!panels.length) return;
    const [h, v] = inPlane();
    const cross = model.get("crosshair");
    const horizontal = profileSelect.value !== "v";
    const along = horizontal ? 0 : 1;  // panel fov index the profile runs along
    const [cW, cH] = canvasSize();
    const a = toMm(0, cH, cW, cH), b = toMm(cW, 0, cW, cH);  // visible mm range of the panels
    const from = horizontal ? a[0] : a[1], to = horizontal ? b[0] : b[1];
    let [lo, hi] = window_();
    const padL = 46, padR = 8, padT = 8, padB = 22;
    const X = (mm) => padL + ((mm - from) / (to - from)) * (W - padL - padR);
    const Y = (val) => H - padB - ((val - lo) / (hi - lo || 1)) * (H - padT - padB);
    ctx.strokeStyle = "#999"; ctx.strokeRect(padL, padT, W - padL - padR, H - padT - padB);
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ctx.fillText(fmt(hi), padL - 3, padT); ctx.fillText(fmt(lo), padL - 3, H - padB);
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    const names = ["x", "y", "z"];
    ctx.fillText(`${names[horizontal ? h : v]} (mm) through the crosshair at ${names[horizontal ? v : h]} = ${(horizontal ? cross[v] : cross[h]).toFixed(1)} mm`,
      (padL + W - padR) / 2, H - padB + 6);
    ctx.save(); ctx.beginPath(); ctx.rect(padL, padT, W - padL - padR, H - padT - padB); ctx.clip();
    for (const p of panels) {
      const n = horizontal ? p.width : p.height;
      const step = p.fov[along] / n;
      ctx.strokeStyle = p.color; ctx.lineWidth = 1.2; ctx.beginPath();
      let started = false;
      for (let k = 0; k < n; k++) {
        const mm = (k + 0.5) * step;
        const val = horizontal ? valueAt(p, mm, cross[v]) : valueAt(p, cross[h], mm);
        if (val === null || Number.isNaN(val)) continue;
        if (!started) { ctx.moveTo(X(mm), Y(val)); started = true; } else ctx.lineTo(X(mm), Y(val));
      }
      ctx.stroke();
    }
    ctx.strokeStyle = "rgba(0, 160, 80, 0.9)"; ctx.setLineDash([3, 3]); ctx.beginPath();
    const at = horizontal ? cross[h] : cross[v];
    ctx.moveTo(X(at), padT); ctx.lineTo(X(at), H - padB); ctx.stroke(); ctx.restore();
  }

  // ------------------------------------------------------------------ mouse
  function setCrosshair(mmX, mmY) {
    const [h, v] = inPlane();
    const g = grid();
    const cross = model.get("crosshair").slice();
    cross[h] = Math.min(Math.max(mmX, 0), g.fov[h] - 1e-6);
    cross[v] = Math.min(Math.max(mmY, 0), g.fov[v] - 1e-6);
    model.set("crosshair", cross);
    model.save_changes();
  }

  function attachMouse(canvas, p) {
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("mousedown", (e) => {
      e.preventDefault();
      const [mmX, mmY] = toMm(e.offsetX, e.offsetY, canvas.width, canvas.height);
      if (e.button === 2 || e.shiftKey) {
        state.drag = { kind: "window", x: e.clientX, y: e.clientY, start: window_().slice() };
      } else if (e.button === 1 || e.ctrlKey || e.metaKey) {
        state.drag = { kind: "pan", x: e.clientX, y: e.clientY, center: viewCenter().slice() };
      } else {
        state.drag = { kind: "cross", canvas };
        setCrosshair(mmX, mmY);
      }
    });
    canvas.addEventListener("mousemove", (e) => {
      state.hover = toMm(e.offsetX, e.offsetY, canvas.width, canvas.height);
      if (!state.drag) writeReadout();
    });
    canvas.addEventListener("mouseleave", () => { state.hover = null; writeReadout(); });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const before = toMm(e.offsetX, e.offsetY, canvas.width, canvas.height);
      state.zoom = Math.min(32, Math.max(0.5, state.zoom * Math.pow(1.1, -e.deltaY / 100)));
      const after = toMm(e.offsetX, e.offsetY, canvas.width, canvas.height);
      const c = viewCenter();
      state.center = [c[0] + before[0] - after[0], c[1] + before[1] - after[1]];
      drawAll();
    }, { passive: false });
    canvas.addEventListener("dblclick", () => resetView(false));
  }

  function onWindowMove(e) {
    const d = state.drag;
    if (!d) return;
    if (d.kind === "cross") {
      const r = d.canvas.getBoundingClientRect();
      const [mmX, mmY] = toMm(e.clientX - r.left, e.clientY - r.top, d.canvas.width, d.canvas.height);
      setCrosshair(mmX, mmY);
    } else if (d.kind === "pan") {
      const s = scale();
      state.center = [d.center[0] - (e.clientX - d.x) / s, d.center[1] + (e.clientY - d.y) / s];
      drawAll();
    } else if (d.kind === "window") {
      const [lo, hi] = d.start;
      const span = Math.max(hi - lo, 1e-6);
      const w = Math.max(span * Math.pow(2, (e.clientX - d.x) / 150), 1e-6);
      const c = (lo + hi) / 2 - ((e.clientY - d.y) / 300) * span;
      model.set("window", [c - w / 2, c + w / 2]);
      rebuildImages(); syncWindowInputs();
    }
  }
  function onWindowUp() {
    if (state.drag && state.drag.kind === "window") model.save_changes();
    state.drag = null;
  }
  window.addEventListener("mousemove", onWindowMove);
  window.addEventListener("mouseup", onWindowUp);

  function resetView(windowToo) {
    state.zoom = 1; state.center = null;
    if (windowToo) { model.set("window", model.get("default_window")); model.save_changes(); }
    drawAll();
  }

  // ------------------------------------------------------------------ controls wiring
  function syncWindowInputs() {
    const [lo, hi] = window_();
    level.value = ((lo + hi) / 2).toPrecision(4);
    width.value = (hi - lo).toPrecision(4);
  }
  function syncSlider() {
    const n = grid().shape[axis()];
    slider.max = String(n - 1);
    slider.value = String(model.get("index"));
    sliceLabel.textContent = `${["x", "y", "z"][axis()]} = ${model.get("index")} of ${n}`;
    axisSelect.value = String(axis());
  }
  function syncControls() {
    if (cmapSelect.options.length === 0) {
      for (const name of model.get("cmaps")) cmapSelect.appendChild(el("option", { value: name, text: name }));
    }
    cmapSelect.value = model.get("cmap");
    overlaySelect.value = model.get("overlay");
    opacity.value = String(model.get("overlay_opacity"));
    syncSlider(); syncWindowInputs();
  }

  slider.addEventListener("input", () => {
    const index = Number(slider.value);
    const g = grid(); const cross = model.get("crosshair").slice();
    cross[axis()] = (index + 0.5) * g.voxel[axis()];
    model.set("index", index); model.set("crosshair", cross); model.save_changes();
    syncSlider();
  });
  axisSelect.addEventListener("change", () => {
    const a = Number(axisSelect.value); const g = grid(); const cross = model.get("crosshair");
    const index = Math.min(g.shape[a] - 1, Math.max(0, Math.floor(cross[a] / g.voxel[a])));
    state.center = null; state.zoom = 1;
    model.set("axis", a); model.set("index", index); model.save_changes();
  });
  cmapSelect.addEventListener("change", () => { model.set("cmap", cmapSelect.value); model.save_changes(); });
  overlaySelect.addEventListener("change", () => { model.set("overlay", overlaySelect.value); model.save_changes(); });
  opacity.addEventListener("input", () => {
    model.set("overlay_opacity", Number(opacity.value)); model.save_changes(); rebuildImages();
  });
  profileSelect.addEventListener("change", drawProfile);
  function fromInputs() {
    const c = Number(level.value), w = Math.max(Number(width.value), 1e-9);
    if (Number.isFinite(c) && Number.isFinite(w)) { model.set("window", [c - w / 2, c + w / 2]); model.save_changes(); }
  }
  level.addEventListener("change", fromInputs);
  width.addEventListener("change", fromInputs);
  reset.addEventListener("click", () => resetView(true));
  play.addEventListener("click", () => { model.set("playing", !model.get("playing")); model.save_changes(); });

  function syncPlaying() {
    const playing = model.get("playing");
    play.textContent = playing ? "❚❚" : "▶";
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
    if (playing) {
      state.timer = setInterval(() => {
        const n = grid().shape[axis()];
        slider.value = String((model.get("index") + 1) % n);
        slider.dispatchEvent(new Event("input"));
      }, model.get("play_interval_ms"));
    }
  }

  model.on("change:panels", () => { loadPanels(); syncSlider(); });
  model.on("change:window", () => { rebuildImages(); syncWindowInputs(); });
  model.on("change:cmap", () => { rebuildImages(); syncControls(); });
  model.on("change:overlay_opacity", () => { opacity.value = String(model.get("overlay_opacity")); rebuildImages(); });
  model.on("change:crosshair", drawAll);
  model.on("change:orientation", drawAll);
  model.on("change:axis", syncSlider);
  model.on("change:index", syncSlider);
  model.on("change:overlay", () => { overlaySelect.value = model.get("overlay"); });
  model.on("change:playing", syncPlaying);

  syncControls();
  loadPanels();
  syncPlaying();
  return () => {
    if (state.timer) clearInterval(state.timer);
    window.removeEventListener("mousemove", onWindowMove);
    window.removeEventListener("mouseup", onWindowUp);
  };
}

export default { render };
