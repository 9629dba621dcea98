"""A zoomable before/after viewer for report pages: plain inline CSS and JS, no network.

Two panes side by side show the same crop before and after a repair, with an optional
overlay (the mask outline). Both panes share one state (zoom and position), so they
always show the same pixels: zoom with the buttons (fit, 1:1, 2x, 4x, in, out), the mouse
wheel (about the cursor) or a double click; pan by dragging either pane. Pixels are
drawn nearest-neighbour (``image-rendering: pixelated``) and the images are sized in
whole CSS pixels rather than CSS-transformed, so zoomed pixels stay sharp squares.

The page includes :data:`ZOOM_CSS` and :data:`ZOOM_JS` once; :func:`zoom_viewer` gives
the markup of each viewer.
"""

from __future__ import annotations

import html

__all__ = ["MAX_ZOOM", "ZOOM_CSS", "ZOOM_JS", "zoom_viewer"]

MAX_ZOOM = 32

ZOOM_CSS = """
.zv{margin:.5em 0 1em}
.zv-bar{display:flex;gap:.3em;align-items:center;margin-bottom:.3em;font-size:90%}
.zv-bar button{padding:1px 8px}
.zv-help{color:#666;margin-left:1em}
.zv-panes{display:flex;gap:.5em}
.zv-pane{flex:1 1 0;position:relative;overflow:hidden;background:#333;cursor:grab;
 max-height:70vh;touch-action:none;user-select:none}
.zv-pane.zv-drag{cursor:grabbing}
.zv-stage{position:absolute;left:0;top:0}
.zv-stage img{position:absolute;left:0;top:0;width:100%;height:100%;display:block;
 image-rendering:pixelated;-webkit-user-drag:none;pointer-events:none}
.zv.zv-nomask .zv-mask{display:none}
.zv-label{position:absolute;right:6px;bottom:4px;color:#fff;font:bold 13px sans-serif;
 text-shadow:0 0 3px #000;pointer-events:none}
"""

ZOOM_JS = """
(function () {
  'use strict';
  function setup(v) {
    const panes = [...v.querySelectorAll('.zv-pane')];
    const stages = panes.map(p => p.querySelector('.zv-stage'));
    const W = +v.dataset.width, H = +v.dataset.height, MAX = +v.dataset.maxZoom;
    const st = {z: 1, tx: 0, ty: 0};
    const readout = v.querySelector('.zv-zoom');
    const size = () => [panes[0].clientWidth, panes[0].clientHeight];
    const fit = () => { const [pw, ph] = size(); return Math.min(pw / W, ph / H); };
    function clamp() {  // centre what is smaller than the pane, never pan past an edge
      const [pw, ph] = size();
      for (const [k, n, p] of [['tx', W, pw], ['ty', H, ph]]) {
        const s = Math.round(n * st.z);
        st[k] = s <= p ? (p - s) / 2 : Math.min(0, Math.max(p - s, st[k]));
      }
    }
    function apply() {
      clamp();
      for (const s of stages) {
        s.style.left = Math.round(st.tx) + 'px';
        s.style.top = Math.round(st.ty) + 'px';
        s.style.width = Math.round(W * st.z) + 'px';
        s.style.height = Math.round(H * st.z) + 'px';
      }
      readout.textContent = Math.round(st.z * 100) + ' %';
      v.dataset.zoom = st.z;
    }
    function zoomTo(z, cx, cy) {  // the image point under (cx, cy) stays put
      const [pw, ph] = size();
      if (cx === undefined) { cx = pw / 2; cy = ph / 2; }
      const z2 = Math.max(Math.min(fit(), 1) / 2, Math.min(MAX, z));
      st.tx = cx - (cx - st.tx) * z2 / st.z;
      st.ty = cy - (cy - st.ty) * z2 / st.z;
      st.z = z2;
      apply();
    }
    for (const b of v.querySelectorAll('button[data-zoom]')) {
      b.addEventListener('click', () => {
        const z = b.dataset.zoom;
        zoomTo(z === 'fit' ? fit() : z === 'in' ? st.z * 1.5 : z === 'out' ? st.z / 1.5 : +z);
      });
    }
    const outline = v.querySelector('.zv-outline');
    if (outline) outline.addEventListener('change', () => {
      v.classList.toggle('zv-nomask', !outline.checked);
    });
    let drag = null;
    for (const p of panes) {
      const at = e => { const r = p.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
      p.addEventListener('wheel', e => {
        e.preventDefault();
        const d = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
        zoomTo(st.z * Math.pow(2, -d / 300), ...at(e));
      }, {passive: false});
      p.addEventListener('dblclick', e => zoomTo(st.z * 2, ...at(e)));
      p.addEventListener('pointerdown', e => {
        if (e.button !== 0) return;
        drag = {x: e.clientX, y: e.clientY, tx: st.tx, ty: st.ty};
        p.setPointerCapture(e.pointerId);
        p.classList.add('zv-drag');
        e.preventDefault();
      });
      p.addEventListener('pointermove', e => {
        if (!drag) return;
        st.tx = drag.tx + e.clientX - drag.x;
        st.ty = drag.ty + e.clientY - drag.y;
        apply();
      });
      const end = () => { drag = null; p.classList.remove('zv-drag'); };
      p.addEventListener('pointerup', end);
      p.addEventListener('pointercancel', end);
    }
    let last = size().join();
    window.addEventListener('resize', () => {  // keep "fit" fitting when the window changes
      const now = size().join();
      if (now !== last) { last = now; apply(); }
    });
    st.z = fit();
    apply();
  }
  function init() { document.querySelectorAll('.zv').forEach(setup); }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
"""


def zoom_viewer(frames: list[tuple[str, str]], width: int, height: int, *,
                overlay: str | None = None, overlay_label: str = "mask outline") -> str:  # fmt: skip
    """Markup of one viewer: ``frames`` are (label, image URL) pairs of images of
    ``width`` x ``height`` pixels; ``overlay`` (a transparent PNG) lies on every frame."""
    e = html.escape
    buttons = "".join(f'<button type="button" data-zoom="{z}" title="{t}">{n}</button>'
                      for z, n, t in (("fit", "fit", "whole crop"), ("1", "1:1", "one image "
                                      "pixel per screen pixel"), ("2", "2x", "200 %"),
                                      ("4", "4x", "400 %"), ("out", "−", "zoom out"),
                                      ("in", "+", "zoom in")))  # fmt: skip
    toggle = (f'<label><input type="checkbox" class="zv-outline" checked> '
              f"{e(overlay_label)}</label>" if overlay else "")  # fmt: skip
    mask = f'<img class="zv-mask" src="{e(overlay)}" alt="" draggable="false">' if overlay else ""
    panes = "".join(
        f'<div class="zv-pane" style="aspect-ratio:{width}/{height}"><div class="zv-stage">'
        f'<img class="zv-img" src="{e(src)}" alt="{e(label)}" draggable="false">{mask}</div>'
        f'<span class="zv-label">{e(label)}</span></div>'
        for label, src in frames
    )  # fmt: skip
    return (f'<div class="zv" data-width="{width}" data-height="{height}" '
            f'data-max-zoom="{MAX_ZOOM}"><div class="zv-bar">{buttons}'
            f'<span class="zv-zoom"></span>{toggle}<span class="zv-help">wheel or double '
            "click: zoom; drag: pan (both panes together)</span></div>"
            f'<div class="zv-panes">{panes}</div></div>')  # fmt: skip
