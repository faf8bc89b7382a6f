const group = await import(`./${process.argv[2]}.js`);
const r = await group.run({ rounds: 3, windowMs: 50, quick: true, log: (s) => console.log(s) });
for (const row of r.rows ?? []) {
  console.log(row.group, row.case, "bus1", row.bus1.median.toFixed(0), Object.entries(row.baselines).map(([k, v]) => `${k} ${v.median.toFixed(0)} (${(v.median / row.bus1.median).toFixed(2)}×)`).join(", "), row.rerun ? "rerun" : "");
}
if (r.figures) console.log(JSON.stringify(r.figures, null, 1));
