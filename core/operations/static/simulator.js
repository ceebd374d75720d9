// Skillbot web simulator: posts each message to /simulator/api/send, which sends it through the
// bot's real webhook, and shows the reply with its routing explanation. Plain DOM, no build step.
(function () {
  "use strict";

  const base = "/simulator";
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const input = $("input");
  const sendButton = $("send");
  const userInput = $("user");
  const explainBox = $("explain");
  const tokenMeta = document.querySelector('meta[name="simulator-token"]');
  const pageToken = tokenMeta ? tokenMeta.content : "";
  const STAGES = ["verify", "parse", "inbound", "route", "skill", "fallback", "outbound", "render", "total"];

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function userId() {
    let id = userInput.value.trim();
    if (!id) {
      id = localStorage.getItem("skillbot.sim.user") ||
        "o_sim_" + Math.random().toString(36).slice(2, 10);
      userInput.value = id;
    }
    localStorage.setItem("skillbot.sim.user", id);
    return id;
  }

  function scroll() { messages.scrollTop = messages.scrollHeight; }

  function addUser(text) {
    const item = el("li", { class: "msg user" }, [
      el("div", { class: "avatar", text: "我" }),
      el("div", { class: "body" }, [el("div", { class: "bubble", text: text })]),
    ]);
    messages.appendChild(item);
    scroll();
  }

  function addNote(text, kind) {
    messages.appendChild(el("li", { class: "msg " + (kind || "system") }, [el("div", { class: "bubble", text: text })]));
    scroll();
  }

  function replyNode(result) {
    const reply = result.reply;
    if (reply && reply.MsgType === "news") {
      let items = (reply.Articles || {}).item || [];
      if (!Array.isArray(items)) items = [items];
      return el("div", { class: "bubble news" }, items.map((a) => el("div", {}, [
        el("a", { href: a.Url || "#", target: "_blank", rel: "noopener", text: a.Title || "" }),
        el("div", { class: "desc", text: a.Description || "" }),
      ])));
    }
    return el("div", { class: "bubble", text: result.text || (reply ? "[" + reply.MsgType + "]" : "") });
  }

  function addBot(result) {
    const meta = [result.plugin || "-", result.intent || "-"].join(" / ") +
      (result.explain && result.explain.timings_ms && result.explain.timings_ms.total !== undefined
        ? " · " + result.explain.timings_ms.total.toFixed(1) + " ms" : "");
    const item = el("li", { class: "msg bot", "data-plugin": result.plugin || "", "data-intent": result.intent || "" }, [
      el("div", { class: "avatar", text: "助手" }),
      el("div", { class: "body" }, [replyNode(result), el("div", { class: "meta", text: meta })]),
    ]);
    item.addEventListener("click", () => select(item, result));
    messages.appendChild(item);
    select(item, result);
    scroll();
  }

  function select(item, result) {
    for (const node of messages.querySelectorAll(".msg.bot.selected")) node.classList.remove("selected");
    item.classList.add("selected");
    showExplanation(result);
  }

  function row(cells, cls) {
    return el("tr", cls ? { class: cls } : {}, cells.map((c) => {
      if (c instanceof Node) return el("td", {}, [c]);
      return el("td", typeof c === "object" ? c : { text: String(c) });
    }));
  }

  const STAGE_NAMES = { verify: "验签", parse: "解析", inbound: "入站过滤", route: "路由", skill: "技能",
    fallback: "兜底", outbound: "出站过滤", render: "渲染", total: "合计" };

  function short(value) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text.length > 120 ? text.slice(0, 120) + "…" : text;
  }

  // One line per piece of evidence, in words rather than JSON.
  function evidenceList(evidence) {
    if (!evidence || typeof evidence !== "object") return el("span", { text: evidence ? String(evidence) : "" });
    const lines = [];
    const seen = new Set(["example_score"]);
    if (evidence.type) { lines.push("消息类型：" + evidence.type); seen.add("type"); }
    if (evidence.keywords) { lines.push("关键词：" + [].concat(evidence.keywords).join("、")); seen.add("keywords"); }
    if (evidence.pattern) { lines.push("正则：" + short(evidence.pattern)); seen.add("pattern"); }
    if (evidence.example) {
      lines.push("最像的例句：「" + short(evidence.example) + "」" +
        (evidence.example_score !== undefined ? "，相似度 " + Number(evidence.example_score).toFixed(2) : ""));
      seen.add("example");
    }
    if (evidence.scorer !== undefined) { lines.push("技能自评：" + Number(evidence.scorer).toFixed(2)); seen.add("scorer"); }
    for (const [key, value] of Object.entries(evidence)) if (!seen.has(key)) lines.push(key + "：" + short(value));
    return el("ul", { class: "evidence" }, lines.map((line) => el("li", { text: line })));
  }

  function showExplanation(result) {
    explainBox.replaceChildren();
    const ex = result.explain || {};
    explainBox.appendChild(el("h2", { text: "由谁回答" }));
    explainBox.appendChild(el("p", {}, [
      el("code", { text: "插件 " + (result.plugin || "-") }), document.createTextNode(" "),
      el("code", { text: "意图 " + (result.intent || "-") }), document.createTextNode(" "),
      el("code", { text: "消息键 " + result.key }),
    ]));
    const tries = (result.tries || []).map((t) => "第 " + t.try + " 次：" + (t.status === null ? "未在时限内回答" : t.status) + "（" + t.ms + " 毫秒）");
    explainBox.appendChild(el("p", { class: "hint", text: tries.join("；") }));
    const timings = ex.timings_ms || {};
    const total = timings.total || Math.max(1, ...Object.values(timings));
    if (Object.keys(timings).length) {
      explainBox.appendChild(el("h2", { text: "各阶段耗时（毫秒）" }));
      const stages = STAGES.filter((s) => s in timings);
      const body = el("tbody", {}, stages.map((s) => row([
        STAGE_NAMES[s] || s, { class: "num", text: timings[s].toFixed(2) },
        el("span", { class: "bar-ms", style: "width:" + Math.max(1, Math.min(100, Math.round(100 * timings[s] / total))) + "%" }),
      ])));
      const cols = el("colgroup", {}, ["stage", "ms", "bar"].map((c) => el("col", { class: c })));
      explainBox.appendChild(el("table", { class: "timings" }, [cols, body]));
    }
    const route = ex.route;
    if (route) {
      explainBox.appendChild(el("h2", { text: "路由（阈值 " + route.threshold + (route.ambiguous ? "，分数接近，按优先级" : "") + "）" }));
      explainBox.appendChild(el("p", { class: "hint tokens", text: "分词：" + (route.tokens || []).join(" | ") }));
      const head = el("tr", {}, ["意图", "插件", "得分", "依据"].map((h) => el("th", { text: h })));
      const rows = (route.candidates || []).map((c) => row([
        c.intent + (c.chosen ? " ✓" : ""), c.plugin || "-", { class: "num", text: c.score.toFixed(3) },
        evidenceList(c.evidence),
      ], c.chosen ? "chosen" : ""));
      const cols = el("colgroup", {}, ["name", "plugin", "score", "evidence"].map((c) => el("col", { class: c })));
      explainBox.appendChild(el("table", { class: "route" }, [cols, el("thead", {}, [head]), el("tbody", {}, rows)]));
      if (!rows.length) explainBox.appendChild(el("p", { class: "hint", text: "没有意图得分：由兜底回答。" }));
    }
    // The plugins' own blocks (skillbot_explain), all rendered alike: heading, summary, items, data.
    for (const block of ex.blocks || []) {
      explainBox.appendChild(el("h2", { text: (block.title || block.plugin) + "（插件 " + block.plugin + "）" }));
      if (block.summary) explainBox.appendChild(el("p", { text: block.summary }));
      if (block.items && block.items.length) {
        explainBox.appendChild(el("ul", { class: "items" }, block.items.map((item) => el("li", { text: String(item) }))));
      }
      if (block.data && Object.keys(block.data).length) {
        explainBox.appendChild(el("pre", { text: JSON.stringify(block.data, null, 2) }));
      }
    }
    if (!result.explain) {
      explainBox.appendChild(el("p", { class: "hint", text: "没有路由说明：回答在已应答的那次尝试中还没有准备好。" }));
    }
  }

  async function send(kind, fields, shown) {
    if (shown) addUser(shown);
    sendButton.disabled = true;
    try {
      const response = await fetch(base + "/api/send", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Simulator-Token": pageToken },
        body: JSON.stringify(Object.assign({ kind: kind, user: userId() }, fields)),
      });
      const result = await response.json();
      if (!response.ok) {
        addNote(result.error || ("HTTP " + response.status), "error");
      } else if (result.error) {
        addNote(result.error, "error");
      } else if (!result.reply) {
        addNote("（公众号没有回复：success）");
        if (result.explain) showExplanation(result);
      } else {
        addBot(result);
      }
    } catch (err) {
      addNote(String(err), "error");
    } finally {
      sendButton.disabled = false;
      input.focus();
    }
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send("text", { text: text }, text);
  });

  $("more").addEventListener("click", () => {
    const tools = $("tools");
    tools.hidden = !tools.hidden;
    $("more").setAttribute("aria-expanded", String(!tools.hidden));
  });

  for (const button of document.querySelectorAll("#tools button")) {
    button.addEventListener("click", () => {
      const kind = button.dataset.kind;
      if (kind === "subscribe") return send(kind, { scene: prompt("扫码场景值（可留空）", "") || "" }, "[关注公众号]");
      if (kind === "unsubscribe") return send(kind, {}, "[取消关注]");
      if (kind === "click") {
        const key = prompt("菜单 EventKey", "");
        return key ? send(kind, { key: key }, "[点击菜单 " + key + "]") : undefined;
      }
      if (kind === "location" || kind === "place") {
        const where = prompt("纬度 经度" + (kind === "place" ? " 地点名" : ""), "39.9042 116.4074" + (kind === "place" ? " 北京市" : ""));
        if (!where) return undefined;
        const [lat, lon, ...label] = where.trim().split(/\s+/);
        return send(kind, { lat: lat, lon: lon, label: label.join(" ") },
          (kind === "place" ? "[位置] " : "[上报位置] ") + where);
      }
      if (kind === "voice") {
        const text = prompt("语音识别结果", "");
        return text ? send(kind, { text: text }, "[语音] " + text) : undefined;
      }
      if (kind === "image") return send(kind, {}, "[图片]");
      return undefined;
    });
  }

  fetch(base + "/api/info").then((r) => r.json()).then((info) => {
    $("mode").textContent = info.mode;
    $("title").title = "plugins: " + info.plugins.join(", ");
  }).catch(() => {});
  userId();
})();
