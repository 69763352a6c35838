// ECharts (the vendored build, loaded as the global `echarts` before the modules) behind a few
// option builders. Every chart is drawn on a canvas from numbers only; names reach ECharts as
// data, and its tooltips escape them. Each chart also gets a plain table of the same numbers
// (see panels.js), for screen readers and for copying.

const { echarts } = globalThis;

const PALETTE = [
  "#1d4ed8",
  "#0f766e",
  "#b45309",
  "#7c3aed",
  "#be123c",
  "#15803d",
  "#0369a1",
  "#a16207",
  "#4d7c0f",
  "#9d174d",
  "#475569",
];

const BASE = {
  color: PALETTE,
  aria: { enabled: true },
  animationDuration: 300,
  textStyle: { fontFamily: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif" },
  grid: { left: 8, right: 16, top: 32, bottom: 8, containLabel: true },
};

const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = echarts.getInstanceByDom(entry.target);
    if (chart) chart.resize();
  }
});

/** Draws `option` in `container` (replacing what was there). */
export function draw(container, option) {
  let chart = echarts.getInstanceByDom(container);
  if (!chart) {
    chart = echarts.init(container, null, { renderer: "canvas" });
    resizer.observe(container);
  }
  chart.setOption({ ...BASE, ...option }, true);
  return chart;
}

/** The R × F grid: F across, R up, each cell's member count written in it. */
export function heatmap(cells) {
  const max = Math.max(1, ...cells.map((cell) => cell.count));
  return {
    tooltip: {
      formatter: (params) => {
        const cell = cells[params.dataIndex];
        return `R${cell.r} F${cell.f} \u00b7 ${echarts.format.encodeHTML(cell.segment)}: ${cell.count}`;
      },
    },
    grid: { left: 8, right: 16, top: 8, bottom: 64, containLabel: true },
    xAxis: {
      type: "category",
      name: "F",
      data: ["1", "2", "3", "4", "5"],
      splitArea: { show: true },
    },
    yAxis: {
      type: "category",
      name: "R",
      data: ["1", "2", "3", "4", "5"],
      splitArea: { show: true },
    },
    visualMap: {
      min: 0,
      max,
      calculable: false,
      orient: "horizontal",
      left: "center",
      bottom: 0,
      inRange: { color: ["#eff6ff", "#1e3a8a"] },
    },
    series: [
      {
        name: "Members",
        type: "heatmap",
        data: cells.map((cell) => [cell.f - 1, cell.r - 1, cell.count]),
        label: { show: true },
        emphasis: { itemStyle: { borderColor: "#111", borderWidth: 1 } },
      },
    ],
  };
}

/** One bar per category. */
export function bars(categories, values, { name = "", horizontal = false } = {}) {
  const category = { type: "category", data: categories, axisLabel: { interval: 0 } };
  const value = { type: "value", minInterval: 1 };
  return {
    tooltip: { trigger: "axis" },
    // Room for long category names on the left (ECharts measures them a little short).
    grid: horizontal ? { ...BASE.grid, left: 24, right: 32 } : BASE.grid,
    xAxis: horizontal ? value : { ...category, axisLabel: { interval: 0, rotate: 30 } },
    yAxis: horizontal ? { ...category, inverse: true } : value,
    series: [
      {
        name,
        type: "bar",
        data: values,
        label: { show: true, position: horizontal ? "right" : "top" },
      },
    ],
  };
}

/** Several series of bars over the same categories, side by side or stacked. */
export function groupedBars(categories, series, { stacked = false } = {}) {
  return {
    tooltip: { trigger: "axis" },
    legend: { type: "scroll", top: 0 },
    grid: { ...BASE.grid, top: 40 },
    xAxis: { type: "category", data: categories },
    yAxis: { type: "value", minInterval: 1 },
    series: series.map((s) => ({
      name: s.name,
      type: "bar",
      stack: stacked ? "total" : undefined,
      data: s.values,
    })),
  };
}

/** A line over days. */
export function line(days, values, name) {
  return {
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: days, boundaryGap: false },
    yAxis: { type: "value", scale: true },
    series: [
      {
        name,
        type: "line",
        data: values,
        areaStyle: { opacity: 0.12 },
        showSymbol: days.length < 40,
      },
    ],
  };
}

/** A funnel, widest step first. */
export function funnel(steps, name) {
  return {
    tooltip: { trigger: "item" },
    series: [
      {
        name,
        type: "funnel",
        sort: "none",
        left: "10%",
        width: "80%",
        label: { show: true, position: "inside", formatter: "{b}: {c}" },
        data: steps.map((step) => ({ name: step.name, value: step.value })),
      },
    ],
  };
}
