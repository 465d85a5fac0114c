// Switchboard playground: pick an agent, chat over the native SSE route, watch every event,
// and copy the last request as curl, Python or Node. Served by the edge, so it calls the same
// origin; the key stays in this tab (sessionStorage) and never leaves it except to this server.
(function () {
  "use strict";
  var byId = document.getElementById.bind(document);
  var keyInput = byId("key");
  var agentSelect = byId("agent");
  var notice = byId("notice");
  var messages = byId("messages");
  var quick = byId("quick-replies");
  var composer = byId("composer");
  var messageInput = byId("message");
  var sendButton = byId("send");
  var events = byId("events");
  var sessionLabel = byId("session");
  var newSession = byId("new-session");
  var snippet = byId("snippet");
  var tabs = Array.prototype.slice.call(document.querySelectorAll("[role=tab]"));

  var origin = location.origin;
  var session = "";
  var busy = false;
  var lastRequest = null;
  var language = "curl";

  function showNotice(text) {
    notice.textContent = text || "";
    notice.hidden = !text;
  }

  function api(method, path, body, accept) {
    var headers = { authorization: "Bearer " + keyInput.value.trim() };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (accept) headers.accept = accept;
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      if (response.ok) return response;
      return response.json().catch(function () {
        return {};
      }).then(function (problem) {
        var message = problem.message || (problem.error && problem.error.message) || "";
        var error = new Error(response.status + " " + response.statusText + (message ? ": " + message : ""));
        error.status = response.status;
        error.body = problem;
        error.requestId = response.headers.get("x-request-id");
        throw error;
      });
    });
  }

  function listAll(path, field) {
    var found = [];
    function page(token, left) {
      var query = token ? "&page_token=" + encodeURIComponent(token) : "";
      return api("GET", path + "?page_size=1000" + query)
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          found = found.concat(answer[field] || []);
          if (answer.next_page_token && left > 1) return page(answer.next_page_token, left - 1);
          return found;
        });
    }
    return page("", 20);
  }

  function connect() {
    showNotice("");
    sessionStorage.setItem("switchboard-playground-key", keyInput.value.trim());
    var models = api("GET", "/v1/models").then(function (r) { return r.json(); });
    // Listing drafts needs `agents:read`; without it the published models are enough.
    var agents = listAll("/v1/agents", "agents").catch(function () { return []; });
    return Promise.all([models, agents]).then(function (both) {
      var published = both[0].data || [];
      var all = both[1];
      var byAgentId = {};
      published.forEach(function (model) { byAgentId[model.agent_id] = model; });
      agentSelect.textContent = "";
      published.forEach(function (model) {
        var option = document.createElement("option");
        option.value = model.id;
        option.textContent = (model.display_name || model.id) + " (" + model.id + ", v" + model.version + ")";
        option.dataset.greeting = model.greeting || "";
        option.dataset.quickReplies = JSON.stringify(model.quick_replies || []);
        agentSelect.appendChild(option);
      });
      all.forEach(function (agent) {
        if (byAgentId[agent.id]) return;
        var option = document.createElement("option");
        option.value = agent.slug || agent.id;
        option.disabled = true;
        option.textContent = (agent.display_name || agent.slug || agent.id) + " (not published)";
        agentSelect.appendChild(option);
      });
      if (!published.length) showNotice("This key sees no published agent.");
      agentSelect.disabled = !published.length;
      messageInput.disabled = sendButton.disabled = newSession.disabled = !published.length;
      startSession();
    }).catch(function (error) {
      showNotice("Could not list agents: " + error.message);
    });
  }

  function addMessage(kind, text) {
    var item = document.createElement("li");
    item.className = "msg " + kind;
    item.textContent = text;
    messages.appendChild(item);
    messages.scrollTop = messages.scrollHeight;
    return item;
  }

  function showQuickReplies(list) {
    quick.textContent = "";
    (list || []).forEach(function (text) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = text;
      button.addEventListener("click", function () { send(text); });
      quick.appendChild(button);
    });
  }

  function startSession() {
    session = "";
    sessionLabel.textContent = "";
    messages.textContent = "";
    var option = agentSelect.selectedOptions[0];
    if (!option || option.disabled) return;
    if (option.dataset.greeting) addMessage("assistant", option.dataset.greeting);
    showQuickReplies(JSON.parse(option.dataset.quickReplies || "[]"));
  }

  function logEvent(kind, payload, style) {
    var item = document.createElement("li");
    var label = document.createElement("span");
    label.className = "kind" + (style ? " " + style : "");
    label.textContent = kind;
    item.appendChild(label);
    if (payload !== undefined) {
      var body = document.createElement("pre");
      var text = typeof payload === "string" ? payload : JSON.stringify(payload);
      // Short payloads (content deltas, most requests) stay on one line.
      if (typeof payload !== "string" && text.length > 100) text = JSON.stringify(payload, null, 2);
      body.textContent = text;
      item.appendChild(body);
    }
    item.dataset.kind = kind;
    events.appendChild(item);
    events.scrollTop = events.scrollHeight;
  }

  function shellQuote(text) {
    return "'" + text.replace(/'/g, "'\\''") + "'";
  }

  function renderSnippet() {
    if (!lastRequest) return;
    var url = origin + lastRequest.path;
    var body = JSON.stringify(lastRequest.body);
    var code;
    if (language === "curl") {
      code = "curl -N " + url + " \\\n" +
        '  -H "Authorization: Bearer $SWITCHBOARD_API_KEY" \\\n' +
        "  -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \\\n" +
        "  -d " + shellQuote(body);
    } else if (language === "python") {
      code = "import json\nimport os\n\nimport httpx\n\n" +
        "url = " + JSON.stringify(url) + "\n" +
        'headers = {"Authorization": f"Bearer {os.environ[\'SWITCHBOARD_API_KEY\']}", ' +
        '"Accept": "text/event-stream"}\n' +
        'with httpx.stream("POST", url, headers=headers, json=' + body + ", timeout=None) as response:\n" +
        "    response.raise_for_status()\n" +
        "    for line in response.iter_lines():\n" +
        '        if line.startswith("data: "):\n' +
        "            print(json.loads(line[6:]))\n";
    } else {
      code = "// Node 18 or later; save as chat.mjs and run `node chat.mjs`.\n" +
        "const response = await fetch(" + JSON.stringify(url) + ", {\n" +
        '  method: "POST",\n' +
        "  headers: {\n" +
        "    Authorization: `Bearer ${process.env.SWITCHBOARD_API_KEY}`,\n" +
        '    "Content-Type": "application/json",\n' +
        '    Accept: "text/event-stream",\n' +
        "  },\n" +
        "  body: JSON.stringify(" + body + "),\n" +
        "});\n" +
        "if (!response.ok) throw new Error(await response.text());\n" +
        "const decoder = new TextDecoder();\n" +
        "for await (const chunk of response.body) process.stdout.write(decoder.decode(chunk, { stream: true }));\n";
    }
    snippet.textContent = code;
  }

  function ensureSession() {
    if (session) return Promise.resolve(session);
    var body = { agent: "agents/" + agentSelect.value };
    logEvent("POST /v1/sessions", body, "http");
    return api("POST", "/v1/sessions", body).then(function (r) { return r.json(); }).then(function (created) {
      session = created.id;
      sessionLabel.textContent = created.id;
      logEvent("session", created);
      return session;
    });
  }

  function readStream(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.charAt(0) === ":") {
            onEvent({ ping: block.slice(1).trim() });
            continue;
          }
          var data = block.split("\n").filter(function (line) { return line.indexOf("data:") === 0; })
            .map(function (line) { return line.slice(5).replace(/^ /, ""); }).join("\n");
          if (data) onEvent(JSON.parse(data));
        }
        return pump();
      });
    }
    return pump();
  }

  function send(text) {
    text = (text || "").trim();
    if (!text || busy) return;
    busy = true;
    sendButton.disabled = true;
    showQuickReplies([]);
    addMessage("user", text);
    var reply = null;
    var answer = "";
    ensureSession().then(function (id) {
      var path = "/v1/sessions/" + encodeURIComponent(id) + "/messages:stream";
      lastRequest = { path: path, body: { content: text } };
      renderSnippet();
      logEvent("POST " + path, lastRequest.body, "http");
      return api("POST", path, lastRequest.body, "text/event-stream");
    }).then(function (response) {
      logEvent("HTTP " + response.status, { "x-request-id": response.headers.get("x-request-id") }, "http");
      return readStream(response, function (event) {
        if (event.ping !== undefined) {
          logEvent("ping");
          return;
        }
        if (event.error) {
          logEvent("error", event.error, "error");
          addMessage("error", event.error.message || "The stream failed.");
          return;
        }
        var result = event.result || {};
        var kind = Object.keys(result)[0] || "event";
        logEvent(kind, result[kind], kind === "error" ? "error" : "");
        if (result.content) {
          if (!reply) reply = addMessage("assistant", "");
          answer += result.content.text || "";
          reply.textContent = answer;
          messages.scrollTop = messages.scrollHeight;
        } else if (result.quick_replies) {
          showQuickReplies(result.quick_replies.replies);
        } else if (result.done && result.done.sources && result.done.sources.length) {
          if (!reply) reply = addMessage("assistant", "");
          var cites = document.createElement("span");
          cites.className = "cites";
          cites.textContent = "Sources: " + result.done.sources.map(function (source) {
            return source.title + " (passage " + (source.passage || 0) + ", score " +
              Number(source.score || 0).toFixed(2) + ")";
          }).join("; ");
          reply.appendChild(cites);
        } else if (result.error) {
          addMessage("error", result.error.message || "The turn failed.");
        }
      });
    }).catch(function (error) {
      logEvent("error", error.body || error.message, "error");
      addMessage("error", error.message);
    }).then(function () {
      busy = false;
      sendButton.disabled = false;
      messageInput.focus();
    });
  }

  byId("connect").addEventListener("submit", function (event) {
    event.preventDefault();
    connect();
  });
  agentSelect.addEventListener("change", startSession);
  newSession.addEventListener("click", function () {
    startSession();
    logEvent("new session");
  });
  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = messageInput.value;
    messageInput.value = "";
    send(text);
  });
  messageInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  byId("clear-events").addEventListener("click", function () { events.textContent = ""; });
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () {
      language = tab.dataset.lang;
      tabs.forEach(function (other) { other.setAttribute("aria-selected", String(other === tab)); });
      snippet.setAttribute("aria-labelledby", tab.id);
      renderSnippet();
    });
  });
  byId("copy").addEventListener("click", function () {
    var text = snippet.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text);
    } else {
      var range = document.createRange();
      range.selectNodeContents(snippet);
      var selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    byId("copy").textContent = "Copied";
    setTimeout(function () { byId("copy").textContent = "Copy"; }, 1500);
  });

  var saved = sessionStorage.getItem("switchboard-playground-key");
  if (saved) {
    keyInput.value = saved;
    connect();
  }
})();
