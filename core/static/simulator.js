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
      el("div", { class: "avatar", text: "Bot" }),
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
    return el("tr", cls ? { class: cls } : {}, cells.map((c) => el("td", typeof c === "object" ? c : { text: String(c) })));
  }

  function showExplanation(result) {
    explainBox.replaceChildren();
    const ex = result.explain || {};
    explainBox.appendChild(el("h2", { text: "Answered by" }));
    explainBox.appendChild(el("p", {}, [
      el("code", { text: "plugin " + (result.plugin || "-") }), document.createTextNode(" "),
      el("code", { text: "intent " + (result.intent || "-") }), document.createTextNode(" "),
      el("code", { text: "key " + result.key }),
    ]));
    const tries = (result.tries || []).map((t) => "try " + t.try + ": " + (t.status === null ? "no answer" : t.status) + " (" + t.ms + " ms)");
    explainBox.appendChild(el("p", { class: "hint", text: tries.join(", ") }));
    const timings = ex.timings_ms || {};
    const total = timings.total || Math.max(1, ...Object.values(timings));
    if (Object.keys(timings).length) {
      explainBox.appendChild(el("h2", { text: "Time per stage (ms)" }));
      const body = el("tbody", {}, STAGES.filter((s) => s in timings).map((s) => row([
        s, { class: "num", text: timings[s].toFixed(2) },
        { class: "", text: "" },
      ])));
      // draw proportional bars in the third column
      Array.from(body.children).forEach((tr, i) => {
        const stage = STAGES.filter((s) => s in timings)[i];
        const width = Math.max(1, Math.round(160 * timings[stage] / total));
        tr.lastChild.appendChild(el("span", { class: "bar-ms", style: "width:" + width + "px" }));
      });
      explainBox.appendChild(el("table", {}, [body]));
    }
    const route = ex.route;
    if (route) {
      explainBox.appendChild(el("h2", { text: "Route (threshold " + route.threshold + (route.ambiguous ? ", ambiguous" : "") + ")" }));
      explainBox.appendChild(el("p", { class: "hint", text: "tokens: " + (route.tokens || []).join(" | ") }));
      const head = el("tr", {}, ["intent", "plugin", "score", "evidence"].map((h) => el("th", { text: h })));
      const rows = (route.candidates || []).map((c) => row([
        c.intent + (c.chosen ? " ✓" : ""), c.plugin || "-", { class: "num", text: c.score.toFixed(3) },
        typeof c.evidence === "string" ? c.evidence : JSON.stringify(c.evidence || ""),
      ], c.chosen ? "chosen" : ""));
      explainBox.appendChild(el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)]));
      if (!rows.length) explainBox.appendChild(el("p", { class: "hint", text: "No intent scored: the fallback answered." }));
    }
    if (ex.llm) {
      explainBox.appendChild(el("h2", { text: "Model" }));
      explainBox.appendChild(el("pre", { text: JSON.stringify(ex.llm, null, 2) }));
    }
    if (ex.filter_hits && ex.filter_hits.length) {
      explainBox.appendChild(el("h2", { text: "Filter hits" }));
      explainBox.appendChild(el("pre", { text: ex.filter_hits.join("\n") }));
    }
    if (!result.explain) {
      explainBox.appendChild(el("p", { class: "hint", text: "No explanation: the answer was not ready on an answered try." }));
    }
  }

  async function send(kind, fields, shown) {
    if (shown) addUser(shown);
    sendButton.disabled = true;
    try {
      const response = await fetch(base + "/api/send", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
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

  $("more").addEventListener("click", () => { $("tools").hidden = !$("tools").hidden; });

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
