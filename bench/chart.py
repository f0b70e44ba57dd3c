#!/usr/bin/env python3
"""Draws the CSV of bench/compare.sh as a PNG.

    python3 bench/chart.py [CSV] [PNG]
    (defaults: bench/results/compare.csv, bench/results/chart.png)

One panel per mode and layout. Bars are the median over the rounds of the
server's CPU time per request (echo) or per MB (stream); the whiskers span
the lowest to the highest round. The number over each bar is its median as
a multiple of the native Boost.Asio server's median in the same panel.
Needs matplotlib (Debian: python3-matplotlib).
"""
import csv
import os
import statistics
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, 'results', 'compare.csv')
DST = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, 'results', 'chart.png')

ORDER = ['native', 'luaasio_base', 'luaasio', 'luaasio_into', 'luv', 'cqueues', 'copas']
LABEL = {
    'native': 'native\nBoost.Asio',
    'luaasio_base': 'LuaAsio\n' + os.environ.get('BASE_LABEL', 'BASE_TREE'),
    'luaasio': 'LuaAsio\nread_some',
    'luaasio_into': 'LuaAsio\nread_some_into',
    'luv': 'luv',
    'cqueues': 'cqueues',
    'copas': 'copas',
}
COLOUR = {
    'native': '#7f7f7f',
    'luaasio_base': '#aec7e8',
    'luaasio': '#1f77b4',
    'luaasio_into': '#4fa3e0',
    'luv': '#ff7f0e',
    'cqueues': '#2ca02c',
    'copas': '#d62728',
}
UNIT = {'echo': 'server CPU µs per request', 'stream': 'server CPU µs per MB'}

runs = {}
with open(SRC, newline='') as f:
    for row in csv.DictReader(f):
        key = (row['mode'], row['layout'])
        runs.setdefault(key, {}).setdefault(row['impl'], []).append(float(row['cpu_us']))

panels = sorted(runs, key=lambda k: (['echo', 'stream'].index(k[0]) if k[0] in ('echo', 'stream') else 9,
                                     0 if k[1] == 'same' else 1))
if not panels:
    sys.exit('chart.py: no rows in ' + SRC)

meta = ''
if os.path.exists(SRC + '.meta'):
    with open(SRC + '.meta') as f:
        meta = ' '.join(line.strip('# \n') for line in f if line.startswith('# rounds'))

fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.9), squeeze=False)
for ax, key in zip(axes[0], panels):
    impls = [i for i in ORDER if i in runs[key]] + sorted(i for i in runs[key] if i not in ORDER)
    meds = [statistics.median(runs[key][i]) for i in impls]
    lows = [m - min(runs[key][i]) for m, i in zip(meds, impls)]
    highs = [max(runs[key][i]) - m for m, i in zip(meds, impls)]
    xs = range(len(impls))
    ax.bar(xs, meds, color=[COLOUR.get(i, '#999999') for i in impls], yerr=[lows, highs],
           capsize=3, error_kw={'elinewidth': 0.8})
    native = statistics.median(runs[key]['native']) if 'native' in runs[key] else None
    for x, m, h in zip(xs, meds, highs):
        if native:
            ax.text(x, m + h, '%.2f×' % (m / native), ha='center', va='bottom', fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([LABEL.get(i, i) for i in impls], fontsize=7, rotation=45, ha='right')
    ax.set_title('%s, %s core%s' % (key[0], 'one' if key[1] == 'same' else 'two',
                                      '' if key[1] == 'same' else 's'), fontsize=9)
    ax.set_ylabel(UNIT.get(key[0], 'server CPU'), fontsize=8)
    ax.tick_params(axis='y', labelsize=7)
    ax.set_ylim(0, max(m + h for m, h in zip(meds, highs)) * 1.15)
    ax.grid(axis='y', linewidth=0.3)
fig.suptitle('Server CPU per unit of work, lower is better (median, whiskers: min-max over rounds; '
             'label: × native)', fontsize=9)
if meta:
    fig.text(0.5, 0.005, meta, ha='center', fontsize=7, color='#555555')
fig.tight_layout(rect=(0, 0.03, 1, 0.95))
os.makedirs(os.path.dirname(os.path.abspath(DST)), exist_ok=True)
fig.savefig(DST, dpi=80)
print('wrote', DST)
