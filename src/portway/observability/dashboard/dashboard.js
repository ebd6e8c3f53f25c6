/* Portway's live monitoring dashboard.
 *
 * Reads the admin listener's JSON API every 2 s (paused while the tab is hidden) and draws it:
 *   GET api/summary                         totals, routes, top API keys, Lambda worker pools
 *   GET api/series?window=<s>[&route=<r>]   per-step counts and latency percentiles over the window
 * With ?token=T in the page's URL, every API call sends "Authorization: Bearer T" (index.html passes the
 * same token on, as ?token=T, to the page's own scripts and styles).
 *
 * For tests and tooling: each chart's container (.chart[data-chart]) gets data-points (non-null points
 * drawn) and data-max (highest value drawn); <body> gets data-updated (epoch ms of the last good refresh);
 * a failed refresh shows the #error banner.
 */
(function () {
  "use strict";

  var REFRESH_MS = 2000;
  var FETCH_TIMEOUT_MS = 8000;
  var WINDOWS = ["300", "900", "3600", "86400"];
  var MAX_BACKOFF_MS = 30000; // after failures the refresh slows down, doubling up to this
  var CHART_HEIGHT = 200;
  var MIN_SPAN_STEPS = 30; // a young gateway's charts still span 30 steps (30 s, or 30 min)

  // Each chart: its unit, and its series as [label, colour variable, series key, per second?].
  var CHARTS = {
    requests: { unit: "req/s", series: [["requests", "--c1", "count", true]] },
    errors: {
      unit: "/s",
      series: [
        ["4XX", "--c2", "4xx", true],
        ["5XX", "--c3", "5xx", true],
      ],
    },
    latency: {
      unit: "ms",
      series: [
        ["p50", "--c1", "latency_p50", false],
        ["p90", "--c4", "latency_p90", false],
        ["p99", "--c3", "latency_p99", false],
      ],
    },
    integration: {
      unit: "ms",
      series: [
        ["p50", "--c1", "integration_p50", false],
        ["p90", "--c4", "integration_p90", false],
        ["p99", "--c3", "integration_p99", false],
      ],
    },
    blocked: {
      unit: "/s",
      series: [
        ["throttled", "--c2", "throttled", true],
        ["WAF blocked", "--c3", "waf_blocked", true],
      ],
    },
  };

  var params = new URLSearchParams(location.search);
  var token = params.get("token");

  var state = {
    window: WINDOWS.indexOf(params.get("window")) >= 0 ? params.get("window") : "300",
    route: params.get("route") || "",
    routeNames: "",
    charts: {}, // name → uPlot
    lastSeries: null,
    started: null, // when the gateway started, epoch s
    xRange: null,
    generation: 0, // bumped when the selection changes: answers to older requests are dropped
    busy: false,
    again: false,
    failures: 0,
    timer: null,
  };

  // ---------------------------------------------------------------- small helpers

  function $(id) {
    return document.getElementById(id);
  }

  /** An element with attributes and children (strings become text nodes: nothing here parses HTML). */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "className") node.className = value;
        else node.setAttribute(name, String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  var intFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

  function fmtInt(n) {
    return n === null || n === undefined ? "–" : intFormat.format(n);
  }

  function fmtNum(n) {
    if (n === null || n === undefined || !isFinite(n)) return "–";
    var abs = Math.abs(n);
    if (abs === 0) return "0";
    if (abs < 10) return n.toFixed(2);
    if (abs < 100) return n.toFixed(1);
    return intFormat.format(Math.round(n));
  }

  function fmtPct(part, whole) {
    return whole > 0 ? ((100 * part) / whole).toFixed(part === 0 || (100 * part) / whole >= 10 ? 0 : 1) + "%" : "";
  }

  function fmtDuration(s) {
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400);
    var h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + (s % 60) + "s";
    return s + "s";
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function replaceRows(table, rows, emptyText, columns) {
    var body = table.tBodies[0];
    body.textContent = "";
    if (!rows.length) {
      body.appendChild(el("tr", { className: "empty" }, [el("td", { colspan: columns }, [emptyText])]));
      return;
    }
    rows.forEach(function (row) {
      body.appendChild(row);
    });
  }

  /** A numeric cell: its formatted text, its raw value in data-value, its column name in data-col. */
  function num(col, value, format, tone) {
    var cls = value === null || value === undefined ? "none" : tone && value > 0 ? tone : null;
    return el("td", { "data-col": col, "data-value": value === null ? "" : value, className: cls }, [
      (format || fmtInt)(value),
    ]);
  }

  /** "p50 / p99"-style text of a {p50, p90, p99} object (null when there were no requests). */
  function percentiles(p, cols) {
    return cols
      .map(function (k) {
        return fmtNum(p ? p[k] : null);
      })
      .join(" / ");
  }

  // ---------------------------------------------------------------- the API

  function ApiError(message, status, path) {
    this.message = message;
    this.status = status;
    this.path = path;
  }

  function api(path) {
    var headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    var controller = new AbortController();
    var timer = setTimeout(function () {
      controller.abort();
    }, FETCH_TIMEOUT_MS);
    return fetch(path, { headers: headers, signal: controller.signal, cache: "no-store" })
      .then(
        function (response) {
          if (response.ok) return response.json();
          return response
            .json()
            .catch(function () {
              return {};
            })
            .then(function (body) {
              throw new ApiError(body.message || response.statusText || "error", response.status, path);
            });
        },
        function (err) {
          var timedOut = err && err.name === "AbortError";
          throw new ApiError(
            timedOut ? "no answer in " + FETCH_TIMEOUT_MS / 1000 + " s" : "the admin listener cannot be reached",
            0,
            path
          );
        }
      )
      .finally(function () {
        clearTimeout(timer);
      });
  }

  // ---------------------------------------------------------------- charts

  /** Points to draw as dots when the line itself is not dense enough to show them: a value with no
   * neighbour draws no line segment, so without a dot a lone request would be invisible. */
  function lonePoints(u, seriesIdx, show) {
    if (show) return null;
    var ys = u.data[seriesIdx];
    var out = [];
    for (var i = 0; i < ys.length; i++) {
      if (ys[i] !== null && (i === 0 || ys[i - 1] === null) && (i === ys.length - 1 || ys[i + 1] === null)) {
        out.push(i);
      }
    }
    return out.length ? out : null;
  }

  /** The last value of a series, leaving out the step in progress (its counts are still growing). */
  function latest(ys) {
    for (var i = ys.length - 2; i >= 0; i--) if (ys[i] !== null) return ys[i];
    return ys.length ? ys[ys.length - 1] : null;
  }

  function fmtTime(epochS) {
    var d = new Date(epochS * 1000);
    return Number(state.window) > 3600 ? d.toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : d.toLocaleTimeString();
  }

  function chartOptions(name, width) {
    var def = CHARTS[name];
    var muted = cssVar("--muted");
    var grid = cssVar("--grid");
    var axis = {
      stroke: muted,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1, size: 4 },
      font: "11px system-ui, sans-serif",
    };
    return {
      width: width,
      height: CHART_HEIGHT,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: {
        x: {
          time: true,
          range: function (u, min, max) {
            return state.xRange || [min, max];
          },
        },
        y: {
          range: function (u, min, max) {
            return [0, max > 0 && isFinite(max) ? max * 1.1 : 1];
          },
        },
      },
      axes: [
        Object.assign({}, axis),
        Object.assign({}, axis, {
          size: 52,
          values: function (u, splits) {
            return splits.map(fmtNum);
          },
        }),
      ],
      // Away from the cursor the legend shows the latest values; over the chart, the hovered ones.
      series: [
        {
          label: "time",
          value: function (u, v, seriesIdx, idx) {
            return idx === null ? "latest" : fmtTime(v);
          },
        },
      ].concat(
        def.series.map(function (s) {
          return {
            label: s[0],
            stroke: cssVar(s[1]),
            width: 1.5,
            spanGaps: false,
            points: { size: 5, filter: lonePoints },
            value: function (u, v, seriesIdx, idx) {
              if (idx === null) v = latest(u.data[seriesIdx]);
              return v === null || v === undefined ? "–" : fmtNum(v) + " " + def.unit;
            },
          };
        })
      ),
    };
  }

  function plotWidth(figure) {
    return Math.max(240, figure.querySelector(".plot").clientWidth);
  }

  function chartData(name, series) {
    var def = CHARTS[name];
    var step = series.step_s || 1;
    var columns = def.series.map(function (s) {
      var values = series[s[2]] || [];
      return values.map(function (v) {
        return v === null || v === undefined ? null : s[3] ? v / step : v;
      });
    });
    return [series.t || []].concat(columns);
  }

  function drawChart(name, series) {
    var figure = document.querySelector('.chart[data-chart="' + name + '"]');
    var data = chartData(name, series);
    var u = state.charts[name];
    if (u) {
      u.setData(data);
    } else {
      u = state.charts[name] = new uPlot(chartOptions(name, plotWidth(figure)), data, figure.querySelector(".plot"));
    }
    var points = 0;
    var max = 0;
    data.slice(1).forEach(function (ys) {
      ys.forEach(function (y) {
        if (y === null) return;
        points++;
        if (y > max) max = y;
      });
    });
    figure.setAttribute("data-points", String(points));
    figure.setAttribute("data-max", String(max));
  }

  /** Draw the window, or only the part of it since the gateway started (``started``, epoch s): before
   * that there is nothing to show, and a young gateway's first seconds would be a sliver at the edge. */
  function drawCharts(series, started) {
    state.lastSeries = series;
    state.started = started;
    var step = series.step_s || 1;
    var t = series.t || [];
    var end = t.length ? t[t.length - 1] : Math.floor(Date.now() / 1000);
    var from = end - Number(state.window) + step;
    var since = null;
    if (typeof started === "number") {
      var first = Math.min(Math.floor(started / step) * step, end - (MIN_SPAN_STEPS - 1) * step);
      if (first > from) {
        from = first;
        since = started;
      }
    }
    $("window-note").textContent = since === null ? "" : "since start";
    $("window-note").title = since === null ? "" : "the gateway started " + fmtDuration(end - since) + " ago";
    state.xRange = [from, end];
    var skip = 0;
    while (skip < t.length && t[skip] < from) skip++;
    var shown = {};
    Object.keys(series).forEach(function (key) {
      shown[key] = Array.isArray(series[key]) ? series[key].slice(skip) : series[key];
    });
    Object.keys(CHARTS).forEach(function (name) {
      drawChart(name, shown);
    });
  }

  /** Rebuild the charts (new colours after a light/dark switch). */
  function rebuildCharts() {
    Object.keys(state.charts).forEach(function (name) {
      state.charts[name].destroy();
    });
    state.charts = {};
    if (state.lastSeries) drawCharts(state.lastSeries, state.started);
  }

  function resizeCharts() {
    Object.keys(state.charts).forEach(function (name) {
      var figure = document.querySelector('.chart[data-chart="' + name + '"]');
      var u = state.charts[name];
      var width = plotWidth(figure);
      if (Math.abs(u.width - width) > 1) u.setSize({ width: width, height: CHART_HEIGHT });
    });
  }

  // ---------------------------------------------------------------- summary: tiles and tables

  function renderTiles(summary) {
    var t = summary.totals;
    var a = summary.api; // null until the first request
    $("api-meta").textContent = a
      ? a.kind + " API " + a.name + " · stage " + a.stage + " · id " + a.id
      : "Portway gateway · no requests yet";
    $("uptime").textContent = fmtDuration(summary.uptime_s);
    $("t-count").textContent = fmtInt(t.count);
    [
      ["t-4xx", t["4xx"]],
      ["t-5xx", t["5xx"]],
    ].forEach(function (pair) {
      var node = $(pair[0]);
      node.textContent = fmtInt(pair[1]);
      node.classList.toggle("nonzero", pair[1] > 0);
      $(pair[0] + "-pct").textContent = fmtPct(pair[1], t.count);
    });
    $("t-throttled").textContent = fmtInt(t.throttled);
    $("t-waf").textContent = fmtInt(t.waf_blocked);
    $("t-denied").textContent = fmtInt(t.authorizer_denied);
    var lookups = t.cache_hits + t.cache_misses;
    $("t-cache").textContent = lookups ? fmtPct(t.cache_hits, lookups) || "0%" : "–";
    $("t-cache-sub").textContent = lookups ? fmtInt(t.cache_hits) + " hits · " + fmtInt(t.cache_misses) + " misses" : "";
  }

  function renderRouteSelector(routes) {
    var names = routes
      .map(function (r) {
        return r.route;
      })
      .sort();
    if (state.route && names.indexOf(state.route) < 0) names.push(state.route); // asked for in the URL
    var key = names.join("\n");
    if (key === state.routeNames) return;
    state.routeNames = key;
    var select = $("route");
    select.textContent = "";
    select.appendChild(el("option", { value: "" }, ["all routes"]));
    names.forEach(function (name) {
      select.appendChild(el("option", { value: name }, [name]));
    });
    select.value = state.route;
  }

  function renderRoutes(routes) {
    var sorted = routes.slice().sort(function (a, b) {
      return b.count - a.count || (a.route < b.route ? -1 : a.route > b.route ? 1 : 0);
    });
    var rows = sorted.map(function (r) {
      var tr = el("tr", { "data-route": r.route, className: r.route === state.route ? "selected" : null }, [
        el("td", { className: "l route", "data-col": "route" }, [
          el("span", { className: "method" }, [r.method]),
          el("code", null, [r.resource]),
        ]),
        num("count", r.count),
        num("4xx", r["4xx"], null, "warn"),
        num("5xx", r["5xx"], null, "bad"),
        num("throttled", r.throttled, null, "warn"),
        num("waf_blocked", r.waf_blocked, null, "warn"),
        num("p50", r.latency ? r.latency.p50 : null, fmtNum),
        num("p90", r.latency ? r.latency.p90 : null, fmtNum),
        num("p99", r.latency ? r.latency.p99 : null, fmtNum),
        el("td", { "data-col": "integration" }, [percentiles(r.integration_latency, ["p50", "p99"])]),
        num("cache_hits", r.cache_hits),
        num("cache_misses", r.cache_misses),
      ]);
      tr.title = "chart " + r.route;
      return tr;
    });
    replaceRows($("routes"), rows, "no routes yet", 12);
  }

  function renderKeys(keys) {
    var rows = keys.map(function (k) {
      return el("tr", { "data-key": k.key_id }, [
        el("td", { className: "l key", "data-col": "key_id" }, [el("code", null, [k.key_id])]),
        num("count", k.count),
        num("4xx", k["4xx"], null, "warn"),
        num("5xx", k["5xx"], null, "bad"),
        num("latency_avg_ms", k.latency_avg_ms, fmtNum),
      ]);
    });
    replaceRows($("keys"), rows, "no API key traffic today", 5);
  }

  function renderLambda(pools) {
    var rows = pools.map(function (p) {
      var total = Math.max(p.workers, 1);
      var pool = el("span", { className: "pool" }, [
        el("span", { className: "bar", title: p.busy + " busy, " + p.idle + " idle" }, [
          el("span", { className: "busy", style: "width:" + (100 * p.busy) / total + "%" }),
          el("span", { className: "idle", style: "width:" + (100 * p.idle) / total + "%" }),
        ]),
        el("span", { "data-col": "workers", "data-value": p.workers }, [
          p.workers + " · " + p.busy + " busy",
        ]),
      ]);
      return el("tr", { "data-function": p["function"] }, [
        el("td", { className: "l", "data-col": "function" }, [el("code", null, [p["function"]])]),
        el("td", { className: "l" }, [pool]),
        num("invocations", p.invocations),
        num("errors", p.errors, null, "bad"),
        num("timeouts", p.timeouts, null, "bad"),
        num("cold_starts", p.cold_starts),
        num("concurrent", p.concurrent),
        el("td", { "data-col": "duration" }, [percentiles(p.duration, ["p50", "p90", "p99"])]),
      ]);
    });
    replaceRows($("lambda"), rows, "no Lambda functions", 8);
  }

  function renderSummary(summary) {
    renderTiles(summary);
    renderRouteSelector(summary.routes);
    renderRoutes(summary.routes);
    renderKeys(summary.keys || []);
    renderLambda(summary.lambda || []);
  }

  // ---------------------------------------------------------------- status and errors

  function setStatus(kind, text) {
    var status = $("status");
    status.classList.toggle("live", kind === "live");
    status.classList.toggle("failed", kind === "failed");
    $("status-text").textContent = text;
  }

  function showError(message) {
    var banner = $("error");
    banner.textContent = message;
    banner.hidden = false;
    setStatus("failed", "refresh failed");
  }

  function hideError() {
    $("error").hidden = true;
  }

  function describe(err) {
    if (!(err instanceof ApiError)) return "Could not draw the dashboard: " + (err && err.message ? err.message : err);
    if (err.status === 401 || err.status === 403) {
      return (
        "The admin API refused this page (" +
        err.status +
        "): " +
        (token ? "the token in the URL is not accepted." : "open the dashboard with ?token=<admin token>.")
      );
    }
    if (err.status === 0) return "Cannot refresh: " + err.message + " (" + err.path + ").";
    return "Cannot refresh: " + err.path + " answered " + err.status + ": " + err.message;
  }

  // ---------------------------------------------------------------- the refresh loop

  function seriesPath() {
    var q = "window=" + state.window;
    if (state.route) q += "&route=" + encodeURIComponent(state.route);
    return "api/series?" + q;
  }

  function schedule(delay) {
    clearTimeout(state.timer);
    state.timer = null;
    if (document.hidden) return; // resumed by visibilitychange
    state.timer = setTimeout(refresh, delay);
  }

  function refresh() {
    if (state.busy) {
      state.again = true;
      return;
    }
    state.busy = true;
    state.again = false;
    var generation = state.generation;
    var path = seriesPath();
    Promise.all([api("api/summary"), api(path)])
      .then(function (answers) {
        if (generation !== state.generation) return;
        renderSummary(answers[0]);
        drawCharts(answers[1], answers[0].now - answers[0].uptime_s);
        hideError();
        state.failures = 0;
        var now = Date.now();
        document.body.setAttribute("data-updated", String(now));
        setStatus("live", "updated " + new Date(now).toLocaleTimeString());
      })
      .catch(function (err) {
        if (generation !== state.generation) return;
        if (err instanceof ApiError && err.status === 404 && err.path === path && state.route) {
          // The route is gone (a reload changed the API): fall back to all routes.
          var gone = state.route;
          selectRoute("");
          showError("The route " + gone + " is not served any more: showing all routes.");
          return;
        }
        state.failures++;
        showError(describe(err));
      })
      .then(function () {
        state.busy = false;
        // 2 s; after failures 2, 4, 8 … up to 30 s, so a dashboard left open on a stopped gateway stays quiet.
        var delay = Math.min(REFRESH_MS * Math.pow(2, Math.max(0, Math.min(state.failures - 1, 8))), MAX_BACKOFF_MS);
        schedule(state.again ? 0 : delay);
      });
  }

  function keepInUrl() {
    var next = new URLSearchParams(location.search);
    next.set("window", state.window);
    if (state.route) next.set("route", state.route);
    else next.delete("route");
    history.replaceState(null, "", "?" + next.toString());
  }

  function selectionChanged() {
    state.generation++;
    keepInUrl();
    schedule(0);
  }

  function selectRoute(route) {
    state.route = route;
    $("route").value = route;
    Array.prototype.forEach.call(document.querySelectorAll("#routes tr[data-route]"), function (tr) {
      tr.classList.toggle("selected", tr.getAttribute("data-route") === route);
    });
    selectionChanged();
  }

  function start() {
    if (typeof uPlot !== "function") {
      showError("The chart library did not load (static/vendor/uPlot.iife.min.js).");
      return;
    }
    $("window").value = state.window;
    $("window").addEventListener("change", function (e) {
      state.window = e.target.value;
      selectionChanged();
    });
    $("route").addEventListener("change", function (e) {
      selectRoute(e.target.value);
    });
    $("routes").addEventListener("click", function (e) {
      var tr = e.target.closest("tr[data-route]");
      if (tr) selectRoute(tr.getAttribute("data-route") === state.route ? "" : tr.getAttribute("data-route"));
    });
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        clearTimeout(state.timer);
        state.timer = null;
        setStatus(null, "paused while hidden");
      } else {
        schedule(0);
      }
    });
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(resizeCharts).observe(document.querySelector(".charts"));
    } else {
      window.addEventListener("resize", resizeCharts);
    }
    var scheme = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
    if (scheme && scheme.addEventListener) scheme.addEventListener("change", rebuildCharts);
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
