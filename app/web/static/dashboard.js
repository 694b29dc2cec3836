/* vidnav dashboard: renders the page's embedded JSON (#vidnav-data) into #app.
   Hand-written, no dependencies. Text is only ever set with textContent. */
(function () {
  "use strict";

  var root = document.getElementById("app");
  var source = document.getElementById("vidnav-data");
  if (!root || !source) { return; }
  var data = JSON.parse(source.textContent);
  var TERMINAL = ["succeeded", "no_answer", "failed", "cancelled"];
  var STATUSES = ["queued", "running", "succeeded", "no_answer", "failed", "cancelled"];
  var ROLES = ["policy", "captioner", "video_qa"];

  // --- small helpers -----------------------------------------------------------------

  function el(tag, attrs) {
    var node = document.createElement(tag);
    var key;
    for (key in attrs || {}) {
      if (!Object.prototype.hasOwnProperty.call(attrs, key) || attrs[key] == null) { continue; }
      if (key === "text") { node.textContent = String(attrs[key]); }
      else if (key === "cls") { node.className = attrs[key]; }
      else if (key.indexOf("data-") === 0) { node.setAttribute(key, String(attrs[key])); }
      else { node.setAttribute(key, String(attrs[key])); }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child == null || child === false) { continue; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }

  function clock(seconds) {
    if (seconds == null || isNaN(seconds)) { return "–"; }
    var s = Math.max(0, seconds);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
    var sec = rest.toFixed(1);
    if (rest < 10) { sec = "0" + sec; }
    return (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + sec;
  }

  function num(x, digits) {
    return x == null || isNaN(x) ? "–" : Number(x).toFixed(digits == null ? 1 : digits);
  }

  function pct(x) { return x == null ? "–" : (100 * x).toFixed(1) + " %"; }

  function age(iso) {
    if (!iso) { return "–"; }
    var s = (Date.now() - Date.parse(iso)) / 1000;
    if (s < 60) { return Math.max(0, Math.round(s)) + " s ago"; }
    if (s < 3600) { return Math.round(s / 60) + " min ago"; }
    if (s < 86400) { return Math.round(s / 3600) + " h ago"; }
    return Math.round(s / 86400) + " d ago";
  }

  function badge(status) { return el("span", {cls: "badge status-" + status, text: status.replace("_", " ")}); }

  function nodeLabel(key) { return key ? "(" + key + ")" : ""; }

  function terminal(status) { return TERMINAL.indexOf(status) >= 0; }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  // Polls fn every `ms` while the tab is visible; fn returns a promise.
  function poll(fn, ms) {
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fn().catch(function () { return null; }).then(function () { busy = false; });
    }, ms);
  }

  function stamp(node) { node.textContent = "updated " + new Date().toLocaleTimeString(); }

  // --- thumbnails: tiles of one sprite ----------------------------------------------------

  function loadThumbnails(d) {
    if (d.thumbnails) { return Promise.resolve(d.thumbnails); }
    if (!d.media || !d.media.thumbnails) { return Promise.resolve(null); }
    return getJSON(d.media.thumbnails).catch(function () { return null; });
  }

  // A tile of `layout` sized `height` px high, as the background of a new element.
  function tile(layout, key, height) {
    var index = layout && layout.nodes ? layout.nodes[key] : undefined;
    if (index == null) { return null; }
    var scale = height / layout.tile_height;
    var col = index % layout.columns, row = Math.floor(index / layout.columns);
    var node = el("i", {cls: "thumb"});
    node.style.width = (layout.tile_width * scale) + "px";
    node.style.height = height + "px";
    node.style.backgroundImage = "url(\"" + layout.sprite + "\")";
    node.style.backgroundSize = (layout.columns * layout.tile_width * scale) + "px auto";
    node.style.backgroundPosition = (-col * layout.tile_width * scale) + "px " +
      (-row * layout.tile_height * scale) + "px";
    return node;
  }

  // --- jobs table (jobs page and video page) ----------------------------------------------

  function jobsTable(items, showVideo) {
    var head = el("tr", null, el("th", {text: "Status"}), showVideo ? el("th", {text: "Video"}) : null,
      el("th", {text: "Question"}), el("th", {text: "Answer"}), el("th", {text: "Rounds", cls: "n"}),
      el("th", {text: "Model s", cls: "n"}), el("th", {text: "Age"}));
    var body = el("tbody");
    items.forEach(function (job) {
      body.appendChild(el("tr", {"data-job-id": job.id, "data-status": job.status},
        el("td", {"data-label": "Status"}, badge(job.status)),
        showVideo ? el("td", {"data-label": "Video"}, job.video_name ?
          el("a", {href: "/ui/videos/" + job.video_id, text: job.video_name}) : "–") : null,
        el("td", {"data-label": "Question", cls: "question"},
          el("a", {href: "/ui/jobs/" + job.id, text: job.question})),
        el("td", {"data-label": "Answer", cls: "answer", text: job.answer ||
          (job.error ? job.error.message : "")}),
        el("td", {"data-label": "Rounds", cls: "n", text: job.rounds}),
        el("td", {"data-label": "Model s", cls: "n", text: num(job.model_seconds, 2)}),
        el("td", {"data-label": "Age", text: age(job.created_at), title: job.created_at})));
    });
    if (!items.length) {
      body.appendChild(el("tr", {cls: "empty"}, el("td", {colspan: 7, text: "No jobs yet."})));
    }
    return el("table", {cls: "jobs", id: "jobs-table"}, el("thead", null, head), body);
  }

  // --- the jobs page ---------------------------------------------------------------------

  function renderJobs() {
    var filters = data.filters || {};
    var status = el("select", {name: "status", id: "filter-status"}, el("option", {value: "", text: "any status"}));
    STATUSES.forEach(function (s) {
      var option = el("option", {value: s, text: s.replace("_", " ")});
      if (filters.status === s) { option.selected = true; }
      status.appendChild(option);
    });
    var video = el("select", {name: "video_id", id: "filter-video"}, el("option", {value: "", text: "any video"}));
    (data.videos || []).forEach(function (v) {
      var option = el("option", {value: v.id, text: v.name});
      if (filters.video_id === v.id) { option.selected = true; }
      video.appendChild(option);
    });
    var updated = el("span", {cls: "updated"});
    var holder = el("div", {cls: "table-holder"});
    root.appendChild(el("div", {cls: "title-row"}, el("h1", {text: "Jobs"}), updated));
    root.appendChild(el("form", {cls: "filters", method: "get", action: "/ui/jobs"},
      el("label", null, "Status ", status), el("label", null, "Video ", video)));

    var cursor = filters.cursor || "";  // set on an older page; a new filter starts over
    function query(page) {
      var params = new URLSearchParams();
      if (status.value) { params.set("status", status.value); }
      if (video.value) { params.set("video_id", video.value); }
      if (page) { params.set("cursor", page); }
      return params.toString();
    }
    function draw(d) {
      clear(holder).appendChild(jobsTable(d.items, true));
      var pages = el("p", {cls: "hint pager"});
      if (cursor) { pages.appendChild(el("a", {href: "/ui/jobs?" + query(""), id: "newest-jobs", text: "← Newest jobs"})); }
      if (d.next) {
        if (cursor) { pages.appendChild(document.createTextNode(" · ")); }
        pages.appendChild(el("a", {href: "/ui/jobs?" + query(d.next), id: "older-jobs", text: "Older jobs →"}));
      }
      if (pages.firstChild) { holder.appendChild(pages); }
      stamp(updated);
    }
    function refresh() { return getJSON("/ui/api/jobs?" + query(cursor)).then(draw); }
    [status, video].forEach(function (select) {
      select.addEventListener("change", function () {
        cursor = "";
        var q = query("");
        window.history.replaceState(null, "", "/ui/jobs" + (q ? "?" + q : ""));
        refresh();
      });
    });
    root.appendChild(holder);
    draw(data);
    poll(refresh, 2000);
  }

  // --- the videos page -------------------------------------------------------------------

  function progress(done, total) {
    var bar = el("span", {cls: "progress"}, el("span", {cls: "fill"}));
    bar.firstChild.style.width = (total ? 100 * done / total : 0) + "%";
    return el("span", {cls: "progress-line"}, bar, " " + done + " / " + total);
  }

  function renderVideos() {
    var updated = el("span", {cls: "updated"});
    var holder = el("div", {cls: "table-holder"});
    root.appendChild(el("div", {cls: "title-row"}, el("h1", {text: "Videos"}), updated));
    root.appendChild(holder);
    function draw(d) {
      var body = el("tbody");
      d.videos.forEach(function (v) {
        body.appendChild(el("tr", {"data-video-id": v.id},
          el("td", {"data-label": "Video"}, el("a", {href: "/ui/videos/" + v.id, text: v.name})),
          el("td", {"data-label": "Status"}, badge(v.status)),
          el("td", {"data-label": "Length", text: clock(v.duration_s)}),
          el("td", {"data-label": "Captions"}, progress(v.captions.done, v.captions.total)),
          el("td", {"data-label": "Added", text: age(v.created_at)})));
      });
      if (!d.videos.length) {
        body.appendChild(el("tr", {cls: "empty"}, el("td", {colspan: 5,
          text: "No videos yet: upload one with POST /v1/videos."})));
      }
      clear(holder).appendChild(el("table", {cls: "videos"}, el("thead", null, el("tr", null,
        el("th", {text: "Video"}), el("th", {text: "Status"}), el("th", {text: "Length"}),
        el("th", {text: "Captions"}), el("th", {text: "Added"}))), body));
      stamp(updated);
    }
    draw(data);
    poll(function () { return getJSON("/ui/api/videos").then(draw); }, 3000);
  }

  // --- the video page --------------------------------------------------------------------

  function renderVideo() {
    var d = data, layout = null;
    var updated = el("span", {cls: "updated"});
    var facts = el("dl", {cls: "facts"});
    var nodes = el("div", {cls: "top-nodes", id: "top-nodes"});
    var jobsHolder = el("div", {cls: "table-holder"});
    var title = el("h1", {text: d.video.name});
    root.appendChild(el("div", {cls: "title-row"}, title, updated));
    root.appendChild(el("section", {cls: "card"}, facts));
    root.appendChild(el("section", {cls: "card"}, el("h2", {text: "The tree's top level"}), nodes));
    var ask = document.getElementById("ask");
    if (ask) { root.appendChild(ask); }
    root.appendChild(el("section", {cls: "card"}, el("h2", {text: "Jobs"}), jobsHolder));

    function fact(name, value) { facts.appendChild(el("dt", {text: name})); facts.appendChild(el("dd", null, value)); }
    function draw(next) {
      d = next;
      var v = d.video;
      clear(facts);
      fact("Status", badge(v.status));
      fact("Length", clock(v.duration_s));
      fact("Picture", v.width ? v.width + " × " + v.height : "–");
      fact("Tree", v.tree_width ? v.tree_width + " wide, " + Math.pow(v.tree_width, 3) + " leaves" : "–");
      fact("Captions", progress(v.captions.done, v.captions.total));
      fact("Caption mode", v.caption_mode);
      if (v.error) { fact("Error", v.error.message); }
      clear(nodes);
      (d.tree.nodes || []).forEach(function (n) {
        var card = el("article", {cls: "top-node", "data-key": n.key},
          el("div", {cls: "top-node-pic"}, tile(layout, n.key, 72)),
          el("h3", {text: "(" + n.key + ") " + clock(n.start_s) + " – " + clock(n.end_s)}),
          el("p", {cls: n.caption ? "caption" : "caption pending",
            text: n.caption || "not captioned yet"}));
        var written = (n.children || []).filter(function (c) { return c.caption; });
        if (written.length) {  // the medium level, where captions exist (eager mode, or asked)
          var list = el("ul", {cls: "children"});
          written.forEach(function (c) {
            list.appendChild(el("li", {"data-key": c.key}, el("strong", {text: "(" + c.key + ") " +
              clock(c.start_s) + " – " + clock(c.end_s) + " "}), c.caption));
          });
          card.appendChild(el("details", {cls: "finer"}, el("summary", {text: written.length + " of " +
            n.children.length + " finer segments captioned"}), list));
        }
        nodes.appendChild(card);
      });
      clear(jobsHolder).appendChild(jobsTable(d.jobs, false));
      stamp(updated);
    }
    draw(d);
    loadThumbnails(d).then(function (t) { layout = t; draw(d); });
    var ticks = 0;
    poll(function () {  // every 2 s while something runs, else every 10 s
      var busy = d.video.status !== "ready" && d.video.status !== "failed" ||
        d.jobs.some(function (j) { return !terminal(j.status); });
      ticks += 1;
      if (!busy && ticks % 5) { return Promise.resolve(); }
      return getJSON("/ui/api/videos/" + d.video.id).then(draw);
    }, 2000);
  }

  // --- the job page ----------------------------------------------------------------------

  function visitsOf(rounds) {
    var visits = [];
    rounds.forEach(function (r) {
      if ((r.kind === "get_caption" || r.kind === "video_qa") && r.node_key) {
        visits.push({n: visits.length + 1, key: r.node_key, round: r.index, kind: r.kind});
      }
    });
    return visits;
  }

  function merge(intervals) {
    var sorted = intervals.slice().sort(function (a, b) { return a[0] - b[0]; });
    var out = [];
    sorted.forEach(function (iv) {
      var last = out[out.length - 1];
      if (last && iv[0] <= last[1]) { last[1] = Math.max(last[1], iv[1]); } else { out.push([iv[0], iv[1]]); }
    });
    return out;
  }

  // The cost so far, from the rounds (a finished job has the trace summary instead).
  function liveCost(rounds, duration) {
    var cost = {rounds: rounds.length, captions_generated: 0, captions_cached: 0, roles: {}, visited_share: 0};
    ROLES.forEach(function (role) { cost.roles[role] = {model_seconds: 0, calls: 0}; });
    var spans = [];
    rounds.forEach(function (r) {
      var p = r.round || {};
      cost.roles.policy.model_seconds += (p.policy_usage && p.policy_usage.seconds) || 0;
      cost.roles.policy.calls += 1;
      var role = r.kind === "get_caption" ? "captioner" : r.kind === "video_qa" ? "video_qa" : null;
      if (role && p.tool_usage) { cost.roles[role].model_seconds += p.tool_usage.seconds || 0; cost.roles[role].calls += 1; }
      if (r.kind === "get_caption" && p.caption_cached === true) { cost.captions_cached += 1; }
      if (r.kind === "get_caption" && p.caption_cached === false) { cost.captions_generated += 1; }
      if (role && p.observation != null && r.start_s != null) { spans.push([r.start_s, r.end_s]); }
    });
    var covered = merge(spans).reduce(function (sum, iv) { return sum + iv[1] - iv[0]; }, 0);
    cost.visited_share = duration ? Math.min(1, covered / duration) : 0;
    return cost;
  }

  function renderJob() {
    var d = data, layout = null, selected = null, following = false;
    var standalone = !d.media;
    var player = null, preview = null;
    var header = el("section", {cls: "job-head"});
    var timeline = el("div", {cls: "timeline", id: "timeline"});
    var detail = el("div", {cls: "node-detail", id: "node-detail"}, el("p", {cls: "hint",
      text: "Click a segment of the timeline to " + (standalone ? "see" : "play") + " it and read its caption."}));
    var answer = el("section", {cls: "card answer-card", id: "answer"});
    var cost = el("section", {cls: "card", id: "cost"});
    var roundsList = el("ol", {cls: "rounds", id: "rounds"});
    var playhead = el("div", {cls: "playhead"});

    root.appendChild(header);
    var cancel = document.getElementById("cancel");  // served only while the job runs
    if (cancel) { root.appendChild(cancel); }
    var stage = el("section", {cls: "card stage"});
    if (!standalone) {
      player = el("video", {id: "player", cls: "player", controls: "", preload: "metadata", src: d.media.video});
      stage.appendChild(player);
    } else {
      preview = el("div", {cls: "player preview", id: "preview"});
      stage.appendChild(preview);
    }
    stage.appendChild(timeline);
    stage.appendChild(detail);
    root.appendChild(stage);
    root.appendChild(el("div", {cls: "columns"}, answer, cost));
    root.appendChild(el("section", {cls: "card"}, el("h2", {text: "Rounds"}), roundsList));

    function drawHeader() {
      var job = d.job;
      clear(header);
      var links = el("p", {cls: "links"}, standalone ? el("span", {text: d.video.name}) :
        el("a", {href: "/ui/videos/" + d.video.id, text: d.video.name}));
      if (!standalone) { links.appendChild(el("a", {href: "/ui/jobs/" + job.id + "/export", text: "Export as HTML"})); }
      header.appendChild(el("div", {cls: "title-row"}, el("h1", {id: "question", text: job.question}),
        following ? el("span", {cls: "live", title: "following the job's events", text: "live"}) : null,
        badge(job.status)));
      if (job.options && job.options.length) {
        var list = el("ol", {cls: "options", type: "A"});
        job.options.forEach(function (o) { list.appendChild(el("li", {text: o})); });
        header.appendChild(list);
      }
      header.appendChild(links);
      header.lastChild.appendChild(el("span", {cls: "updated", text: standalone && d.exported_at ?
        "exported " + new Date(d.exported_at).toLocaleString() : "asked " + age(job.created_at)}));
    }

    function captionOf(key) {
      if (d.captions && d.captions[key]) { return d.captions[key]; }
      for (var i = d.rounds.length - 1; i >= 0; i--) {
        var r = d.rounds[i];
        if (r.node_key === key && r.kind === "get_caption" && r.round && r.round.observation) { return r.round.observation; }
      }
      return null;
    }

    function showNode(node, seek) {
      selected = node.key;
      Array.prototype.forEach.call(timeline.querySelectorAll(".node.selected"), function (n) { n.classList.remove("selected"); });
      var button = timeline.querySelector(".node[data-key=\"" + node.key + "\"]");
      if (button) { button.classList.add("selected"); }
      var visits = visitsOf(d.rounds).filter(function (v) { return v.key === node.key; });
      clear(detail);
      detail.appendChild(el("h3", {text: "Segment " + nodeLabel(node.key) + " · " + clock(node.start_s) + " – " + clock(node.end_s)}));
      if (visits.length) {
        detail.appendChild(el("p", {cls: "visited-note", text: "Visited " + visits.map(function (v) {
          return "#" + v.n + " (round " + (v.round + 1) + ", " + v.kind + ")"; }).join(", ")}));
      }
      var caption = captionOf(node.key);
      detail.appendChild(el("p", {cls: caption ? "caption" : "caption pending", id: "node-caption",
        text: caption || "No caption has been written for this segment."}));
      if (player) {
        if (seek) { player.currentTime = node.start_s; }
      } else if (preview) {
        clear(preview).appendChild(tile(layout, node.key, 180) || el("span", {text: nodeLabel(node.key)}));
      }
    }

    function drawTimeline() {
      var tree = d.tree;
      clear(timeline);
      if (!tree) { timeline.appendChild(el("p", {cls: "hint", text: "The video has not been probed yet."})); return; }
      var duration = tree.duration_s;
      var visits = visitsOf(d.rounds), byKey = {};
      visits.forEach(function (v) { (byKey[v.key] = byKey[v.key] || []).push(v.n); });
      var names = ["high", "medium", "low"];
      var tracks = el("div", {cls: "tracks"});
      timeline.appendChild(tracks);
      tree.levels.forEach(function (nodes, i) {
        var band = el("div", {cls: "band level-" + (i + 1), "data-level": i + 1},
          el("span", {cls: "band-name", text: names[i]}));
        nodes.forEach(function (node) {
          var numbers = byKey[node.key];
          var button = el("button", {type: "button", cls: "node" + (numbers ? " visited" : "") +
            (node.key === selected ? " selected" : ""), "data-key": node.key,
            "data-start": node.start_s, title: nodeLabel(node.key) + " " + clock(node.start_s) + " – " + clock(node.end_s)});
          button.style.left = (100 * node.start_s / duration) + "%";
          button.style.width = (100 * (node.end_s - node.start_s) / duration) + "%";
          // A high node is wide: a strip of its children's pictures; others show their own.
          var keys = i === 0 ? tree.levels[1].filter(function (c) { return c.key.split(",")[0] === node.key; })
            .map(function (c) { return c.key; }) : [node.key];
          keys.forEach(function (key, j) {
            var pic = tile(layout, key, i === 0 ? 54 : i === 1 ? 40 : 30);
            if (pic) { pic.style.left = (100 * (j + 0.5) / keys.length) + "%"; button.appendChild(pic); }
          });
          button.addEventListener("click", function () { showNode(node, true); });
          band.appendChild(button);
          if (numbers) {  // beside the node, not in it: a leaf can be narrower than its badge
            var mark = el("span", {cls: "visit-num", "data-key": node.key, text: numbers.join("·")});
            mark.style.left = (100 * node.start_s / duration) + "%";
            band.appendChild(mark);
          }
        });
        tracks.appendChild(band);
      });
      var evaluation = d.evaluation;
      if (evaluation && evaluation.clues && evaluation.clues.length) {
        var clues = el("div", {cls: "band clues", id: "clues"}, el("span", {cls: "band-name", text: "clues"}));
        evaluation.clues.forEach(function (c) {
          var mark = el("span", {cls: "clue", title: "clue " + clock(c[0]) + " – " + clock(c[1])});
          mark.style.left = (100 * c[0] / duration) + "%";
          mark.style.width = Math.max(0.3, 100 * (c[1] - c[0]) / duration) + "%";
          clues.appendChild(mark);
        });
        tracks.appendChild(clues);
      }
      tracks.appendChild(playhead);
      movePlayhead();
    }

    function movePlayhead() {
      if (!player || !d.tree) { playhead.style.display = "none"; return; }
      playhead.style.display = "";
      playhead.style.left = (100 * Math.min(1, player.currentTime / d.tree.duration_s)) + "%";
    }

    function drawAnswer() {
      var job = d.job, evaluation = d.evaluation;
      clear(answer).appendChild(el("h2", {text: "Answer"}));
      if (job.answer != null) { answer.appendChild(el("p", {cls: "answer-text", id: "answer-text", text: job.answer})); }
      else if (job.error) { answer.appendChild(el("p", {cls: "error", id: "answer-text", text: job.error.message})); }
      else { answer.appendChild(el("p", {cls: "pending", id: "answer-text", text: terminal(job.status) ? "No answer." : "Still looking…"})); }
      if (evaluation) {
        var verdict = !evaluation.scored ? "not scored yet" : evaluation.correct == null ? "no reference answer"
          : evaluation.correct ? "right" : "wrong";
        var box = el("dl", {cls: "facts evaluation", id: "evaluation"});
        box.appendChild(el("dt", {text: "Evaluation"}));
        box.appendChild(el("dd", {cls: "verdict verdict-" + verdict.replace(/ /g, "-"), text: verdict}));
        if (evaluation.truth != null) { box.appendChild(el("dt", {text: "Reference"})); box.appendChild(el("dd", {text: evaluation.truth})); }
        if (evaluation.scored) {
          box.appendChild(el("dt", {text: "Localization F1"})); box.appendChild(el("dd", {text: num(evaluation.f1, 2)}));
          box.appendChild(el("dt", {text: "Reward"})); box.appendChild(el("dd", {text: num(evaluation.reward, 2)}));
        }
        answer.appendChild(box);
      }
    }

    function drawCost() {
      var summary = d.job.summary;
      var c = summary && summary.roles ? summary : liveCost(d.rounds, d.tree ? d.tree.duration_s : 0);
      clear(cost).appendChild(el("h2", {text: summary ? "Cost" : "Cost so far"}));
      var facts = el("dl", {cls: "facts", id: "cost-facts"});
      function add(name, value) { facts.appendChild(el("dt", {text: name})); facts.appendChild(el("dd", {text: value})); }
      add("Rounds", c.rounds);
      add("Captions", c.captions_generated + " generated, " + c.captions_cached + " cached");
      ROLES.forEach(function (role) {
        var stats = c.roles[role] || {};
        add(role.replace("_", " ") + " model s", num(stats.model_seconds, 2) + (stats.calls != null ? " (" + stats.calls + " calls)" : ""));
      });
      add("Video visited", pct(c.visited_share));
      if (summary && summary.wall_seconds != null) { add("Wall time", num(summary.wall_seconds, 2) + " s"); }
      cost.appendChild(facts);
    }

    function roundItem(r) {
      var p = r.round || {};
      var usage = p.policy_usage || {};
      var meta = ["round " + (r.index + 1), r.kind];
      if (r.node_key) { meta.push(nodeLabel(r.node_key) + " " + clock(r.start_s) + " – " + clock(r.end_s)); }
      meta.push(num(p.wall_seconds, 2) + " s");
      if (usage.prompt_tokens != null) { meta.push(usage.prompt_tokens + " + " + (usage.completion_tokens || 0) + " tokens"); }
      var item = el("li", {cls: "round kind-" + r.kind, "data-index": r.index, "data-kind": r.kind,
        "data-node": r.node_key || ""}, el("p", {cls: "round-meta", text: meta.join(" · ")}));
      if (p.think) { item.appendChild(el("p", {cls: "think", text: p.think})); }
      if (p.tool) { item.appendChild(el("pre", {cls: "tool", text: p.tool})); }
      if (p.observation != null) {
        item.appendChild(el("details", {cls: "observation", open: p.observation.length < 400 ? "" : null},
          el("summary", {text: "Observation" + (p.caption_cached === true ? " (cached caption)" :
            p.caption_cached === false ? " (caption generated)" : "") +
            (p.tool_wall_seconds != null ? " · " + num(p.tool_wall_seconds, 2) + " s" : "")}),
          el("p", {text: p.observation})));
      }
      if (p.answer != null) { item.appendChild(el("p", {cls: "round-answer", text: "Answer: " + p.answer})); }
      if (p.violation) { item.appendChild(el("p", {cls: "error", text: p.violation + (p.violation_detail ? ": " + p.violation_detail : "")})); }
      if (p.error) { item.appendChild(el("p", {cls: "error", text: p.error})); }
      return item;
    }

    function drawRounds() {
      clear(roundsList);
      d.rounds.forEach(function (r) { roundsList.appendChild(roundItem(r)); });
      if (!d.rounds.length) { roundsList.appendChild(el("li", {cls: "empty", text: terminal(d.job.status) ? "No rounds." : "Waiting for the first round…"})); }
    }

    function drawAll() {
      drawHeader(); drawTimeline(); drawAnswer(); drawCost(); drawRounds();
      root.setAttribute("data-status", d.job.status);
      if (cancel && terminal(d.job.status)) { cancel.hidden = true; }
    }

    function reload() {
      return getJSON("/ui/api/jobs/" + d.job.id).then(function (next) {
        next.media = d.media; next.events = d.events; next.thumbnails = d.thumbnails; d = next; drawAll();
      });
    }

    function follow() {
      if (standalone || !d.events || terminal(d.job.status) || !window.EventSource) { return; }
      var stream = new EventSource(d.events);
      following = true;
      drawHeader();
      stream.addEventListener("round", function (e) {
        var r = JSON.parse(e.data);
        d.rounds = d.rounds.filter(function (x) { return x.index !== r.index; }).concat([r])
          .sort(function (a, b) { return a.index - b.index; });
        d.job.rounds = d.rounds.length;
        if (d.job.status === "queued") { d.job.status = "running"; }
        drawAll();
        firstVisit();
      });
      stream.addEventListener("restarted", function () { d.rounds = []; drawAll(); });
      function stop() { stream.close(); following = false; }
      stream.addEventListener("result", function () { stop(); reload(); });
      stream.addEventListener("error", function (e) {
        if (e.data) { stop(); drawHeader(); }  // an error event of ours; a dropped connection retries
      });
    }

    if (player) { player.addEventListener("timeupdate", movePlayhead); player.addEventListener("seeked", movePlayhead); }
    // Start on the first segment the policy looked at (shown, not played).
    function firstVisit() {
      var first = visitsOf(d.rounds)[0];
      if (!first || selected || !d.tree) { return; }
      var level = d.tree.levels[first.key.split(",").length - 1];
      var node = level.filter(function (n) { return n.key === first.key; })[0];
      if (node) { showNode(node, false); }
    }

    drawAll();
    firstVisit();
    loadThumbnails(d).then(function (t) {
      layout = t; d.thumbnails = t; drawTimeline();
      if (selected && preview) { clear(preview).appendChild(tile(layout, selected, 180) || el("span")); }
    });
    follow();
  }

  var renderers = {jobs: renderJobs, videos: renderVideos, video: renderVideo, job: renderJob};
  if (renderers[root.getAttribute("data-view")]) { renderers[root.getAttribute("data-view")](); }
}());
