#!/usr/bin/env python3
"""Grouped bar charts as plain SVG (no third-party packages)."""

from xml.sax.saxutils import escape

COLOURS = ["#4e79a7", "#a0cbe8", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948"]


def nice_max(v):
    """The smallest 1/2/2.5/5 x 10^k at or above v (at least 1)."""
    if v <= 0:
        return 1.0
    k = 1.0
    while k * 10 < v:
        k *= 10
    while k > v:
        k /= 10
    for m in (1, 2, 2.5, 5, 10):
        if k * m >= v:
            return k * m
    return k * 10


def bar_chart(path, title, groups, series, unit, note=""):
    """Writes a grouped bar chart: one group per entry of `groups`, one bar per series.

    `series` is a list of (label, values) with one value (or None: no bar) per group.
    """
    width, height = 960, 460
    left, right, top, bottom = 70, 20, 50, 110
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vals in series for v in vals if v is not None]
    vmax = nice_max(max(values) if values else 1.0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>']
    if note:
        out.append(f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#666" font-size="10">{escape(note)}</text>')
    for i in range(6):
        v = vmax * i / 5
        y = top + plot_h - plot_h * i / 5
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 {top + plot_h / 2})" '
               f'text-anchor="middle">{escape(unit)}</text>')
    n_groups = max(len(groups), 1)
    group_w = plot_w / n_groups
    n_series = max(len(series), 1)
    bar_w = group_w * 0.8 / n_series
    for g, name in enumerate(groups):
        gx = left + g * group_w + group_w * 0.1
        for s, (label, vals) in enumerate(series):
            v = vals[g] if g < len(vals) else None
            if v is None:
                continue
            h = plot_h * min(v, vmax) / vmax
            x = gx + s * bar_w
            y = top + plot_h - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.92:.1f}" height="{h:.1f}" '
                       f'fill="{COLOURS[s % len(COLOURS)]}"><title>{escape(label)} {escape(name)}: {v:.2f} {escape(unit)}</title></rect>')
            out.append(f'<text x="{x + bar_w * 0.46:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="9">{v:.3g}</text>')
        out.append(f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{escape(name)}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>')
    lx, ly = left, height - bottom + 45
    for s, (label, _) in enumerate(series):
        x = lx + s * 170
        out.append(f'<rect x="{x}" y="{ly}" width="12" height="12" fill="{COLOURS[s % len(COLOURS)]}"/>')
        out.append(f'<text x="{x + 18}" y="{ly + 10}">{escape(label)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
