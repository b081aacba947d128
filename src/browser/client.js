// odin-ws browser client: an ES module with no dependencies, served by the server at
// /client.js. It keeps one WebSocket open (reconnecting with backoff and jitter,
// honouring the server's drain), resubscribes after each reconnect, drops duplicates
// by seq and routes each message to the subscriptions whose patterns match it. When
// WebSocket cannot connect it falls back to Server-Sent Events (/sse) from the same
// position, and goes back to WebSocket once one opens again.
// Usage: docs/browser.md; the wire protocol: docs/protocol.md.

/** First reconnect delay; it doubles per failed attempt up to BACKOFF_MAX_MS. */
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30000;
/** A draining server (close 1001) spreads its clients; we add our own spread. */
const DRAIN_SPREAD_MS = 2000;
const CLOSE_GOING_AWAY = 1001;
/** WebSocket attempts in a row that never opened before the client uses SSE. */
const SSE_AFTER_FAILURES = 2;
/** While on SSE, how often a WebSocket is tried again. */
const WS_RETRY_MS = 30000;

/**
 * Whether a NATS-style pattern covers a channel: `*` is exactly one token, `>` as
 * the last token is one or more tokens.
 */
export function channelMatches(pattern, channel) {
  const want = pattern.split(".");
  const have = channel.split(".");
  for (let i = 0; i < want.length; i++) {
    if (want[i] === ">") return i === want.length - 1 && have.length > i;
    if (i >= have.length) return false;
    if (want[i] !== "*" && want[i] !== have[i]) return false;
  }
  return want.length === have.length;
}

/** Milliseconds before reconnect attempt `attempt` (0-based): "equal jitter". */
export function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** One `subscribe` call: its patterns and handler; `unsubscribe()` ends it. */
class Subscription {
  constructor(client, channels, handler, snapshot) {
    this.client = client;
    this.channels = channels.slice();
    this.handler = handler;
    this.snapshot = snapshot;
    this.active = true;
  }

  matches(channel) {
    return this.channels.some((pattern) => channelMatches(pattern, channel));
  }

  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.client._remove(this);
  }
}

export class OdinWS {
  /**
   * @param {string} url ws:// or wss:// URL of the server's WS_PATH
   * @param {object} [options] token, snapshot, onState, onGap, onError, and for the
   *   SSE fallback: sse (false: never), sseAfter, sseUrl, wsRetryMs
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = options;
    this.state = "closed";
    /** "websocket", or "sse" while on the fallback. */
    this.transport = "websocket";
    this._stateTransport = null;
    this._subs = new Set();
    /** Pattern -> how many subscriptions hold it (the server holds each once). */
    this._patterns = new Map();
    this._ws = null;
    // The SSE fallback: the stream, WebSocket attempts in a row that never opened,
    // and the WebSocket tried again while on the stream.
    this._es = null;
    this._wsFailures = 0;
    this._probe = null;
    this._probeTimer = null;
    this._sseReopen = false;
    this._sseGeneration = 0;
    this._welcomed = false;
    this._stopped = true;
    this._attempt = 0;
    this._timer = null;
    this._pinger = null;
    this._lastFrameAt = 0;
    this._nextId = 1;
    this._everOpened = false;
    // Positions. `seq` is unique within an epoch; a connection whose welcome has
    // no epoch is a sequence space of its own.
    this._epoch = null;
    this._position = null;
    this._lastSeq = new Map();
  }

  /** Opens the connection; the first `subscribe` calls it, so it is optional. */
  connect() {
    if (!this._stopped) return;
    this._stopped = false;
    this._attempt = 0;
    this._open();
  }

  /**
   * Receives every message on channels matching `channels` (patterns with `*`/`>`);
   * `handler` gets the whole message object.
   */
  subscribe(channels, handler, options = {}) {
    const list = Array.isArray(channels) ? channels : [channels];
    const snapshot = options.snapshot ?? this.options.snapshot ?? false;
    const sub = new Subscription(this, list, handler, snapshot);
    this._subs.add(sub);
    const fresh = list.filter((p) => this._hold(p) === 1);
    if (this._welcomed && this.transport === "sse") {
      // A stream's channels are in its URL: open it again, from our position.
      if (fresh.length || snapshot) this._reopenSse();
    } else if (this._welcomed) {
      const send = snapshot ? list : fresh;
      if (send.length) this._send(this._subscribeFrame(send, snapshot, false));
    }
    this.connect();
    return sub;
  }

  /** Closes for good: no reconnect until `connect()` is called again. */
  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    this._stopTransport(1000, "client closed");
    this._setState("closed");
  }

  _hold(pattern) {
    const count = (this._patterns.get(pattern) ?? 0) + 1;
    this._patterns.set(pattern, count);
    return count;
  }

  _remove(sub) {
    this._subs.delete(sub);
    const gone = [];
    for (const pattern of sub.channels) {
      const count = (this._patterns.get(pattern) ?? 1) - 1;
      if (count > 0) {
        this._patterns.set(pattern, count);
      } else {
        this._patterns.delete(pattern);
        gone.push(pattern);
      }
    }
    if (gone.length && this._welcomed && this.transport === "sse") {
      this._reopenSse();
    } else if (gone.length && this._welcomed) {
      this._send({ type: "unsubscribe", channels: gone, id: this._nextId++ });
    }
  }

  // The transport: a WebSocket, or after SSE_AFTER_FAILURES WebSocket attempts
  // that never opened, an EventSource on /sse. Both feed _onText and _onClosed.
  async _open() {
    clearTimeout(this._timer);
    this.transport = this._useSse() ? "sse" : "websocket";
    this._setState("connecting");
    if (this.transport === "sse") return this._openSse();
    let ws;
    try {
      const url = await this._urlWithToken();
      if (this._stopped) return;
      ws = new WebSocket(url);
    } catch (error) {
      this._onClosed({ code: 0, reason: String(error) });
      return;
    }
    this._ws = ws;
    ws.onmessage = (event) => this._ws === ws && this._onText(event.data);
    ws.onclose = (event) => this._ws === ws && this._onClosed(event);
  }

  /** The URL with `?token=` (browsers cannot set headers on a WebSocket). */
  async _urlWithToken() {
    const token = await this._token();
    if (!token) return this.url;
    const url = new URL(this.url, globalThis.location?.href);
    url.searchParams.set("token", token);
    return url.toString();
  }

  async _token() {
    const given = this.options.token;
    return typeof given === "function" ? await given() : given;
  }

  _useSse() {
    const after = this.options.sseAfter ?? SSE_AFTER_FAILURES;
    return this.options.sse !== false && typeof EventSource !== "undefined" && this._wsFailures >= after;
  }

  /**
   * The stream's URL: `sseUrl`, else /sse beside the WebSocket URL (ws -> http,
   * wss -> https), with the held channels, a snapshot when a subscription wants
   * one, our position as `since` and the token.
   */
  async _sseUrl() {
    let url;
    if (this.options.sseUrl) {
      url = new URL(this.options.sseUrl, globalThis.location?.href);
    } else {
      url = new URL(this.url, globalThis.location?.href);
      url.protocol = url.protocol === "wss:" ? "https:" : "http:";
      url.pathname = "/sse";
      url.search = "";
      url.hash = "";
    }
    url.searchParams.set("channels", [...this._patterns.keys()].join(","));
    if ([...this._subs].some((s) => s.active && s.snapshot)) url.searchParams.set("snapshot", "1");
    if (this._epoch !== null && this._position !== null) {
      url.searchParams.set("since", `${this._epoch}:${this._position}`);
    }
    const token = await this._token();
    if (token) url.searchParams.set("token", token);
    return url.toString();
  }

  async _openSse() {
    if (this._patterns.size === 0) {
      // Nothing to stream yet: the first subscribe opens it.
      this._welcomed = true;
      this._setState("open");
      this._scheduleProbe();
      return;
    }
    // Opens overlap while a token is fetched: only the latest may take over.
    const generation = ++this._sseGeneration;
    let es;
    try {
      const url = await this._sseUrl();
      if (this._stopped || this.transport !== "sse" || generation !== this._sseGeneration) return;
      es = new EventSource(url);
    } catch (error) {
      this._onClosed({ code: 0, reason: String(error) });
      return;
    }
    this._es = es;
    es.addEventListener("subscribed", (e) => this._es === es && this._onSseSubscribed(e.data));
    es.addEventListener("message", (e) => this._es === es && this._onSseMessage(e));
    es.addEventListener("gap", (e) => this._es === es && this._onText(e.data));
    es.onerror = () => {
      if (this._es !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // Refused (a 4xx or 503 answer): our own backoff takes over.
        this._onClosed({ code: 0, reason: "event stream refused" });
      } else {
        // The browser reconnects by itself, with Last-Event-ID.
        this._welcomed = false;
        clearTimeout(this._probeTimer);
        this._setState("reconnecting", { delay: 0 });
      }
    };
  }

  /** The stream's first event: open, from our position when the server had it. */
  _onSseSubscribed(text) {
    let ack;
    try {
      ack = JSON.parse(text);
    } catch {
      return;
    }
    const recovered = this._position !== null && ack.recovered !== false;
    if (!recovered) {
      this._lastSeq.clear();
      this._position = null;
      this._epoch = null;
    }
    const lost = this._everOpened && this._patterns.size > 0 && !recovered;
    this._welcomed = true;
    this._attempt = 0;
    this._setState("open");
    if (lost) {
      this.options.onGap?.({ type: "gap", channels: [...this._patterns.keys()], reason: "reconnected" });
    }
    this._everOpened = true;
    this._scheduleProbe();
  }

  /** A message event: its id (`<epoch>:<seq>`) names the epoch our position is in. */
  _onSseMessage(event) {
    const id = event.lastEventId ?? "";
    const cut = id.lastIndexOf(":");
    if (cut > 0) {
      const epoch = id.slice(0, cut);
      if (epoch !== this._epoch) {
        this._lastSeq.clear();
        this._position = null;
        this._epoch = epoch;
      }
    }
    this._onText(event.data);
  }

  /** Opens the stream again (new channels), once per turn however many changes. */
  _reopenSse() {
    if (this._sseReopen) return;
    this._sseReopen = true;
    queueMicrotask(() => {
      this._sseReopen = false;
      if (this.transport !== "sse" || this._stopped) return;
      this._closeSse();
      this._openSse();
    });
  }

  _closeSse() {
    this._sseGeneration++;
    const es = this._es;
    this._es = null;
    es?.close();
  }

  _scheduleProbe() {
    clearTimeout(this._probeTimer);
    if (this.transport !== "sse" || this._stopped) return;
    this._probeTimer = setTimeout(() => this._probeWebSocket(), this.options.wsRetryMs ?? WS_RETRY_MS);
  }

  /**
   * While on SSE: a WebSocket tried beside the stream. Its welcome means WebSocket
   * works again; it takes over and resubscribes from our position (whatever the
   * stream also delivered meanwhile is dropped by `seq`).
   */
  async _probeWebSocket() {
    if (this.transport !== "sse" || this._stopped || this._probe) return;
    let ws;
    try {
      const url = await this._urlWithToken();
      // close() or a move off SSE may have come while the token was fetched.
      if (this.transport !== "sse" || this._stopped || this._probe) return;
      ws = new WebSocket(url);
    } catch {
      this._scheduleProbe();
      return;
    }
    this._probe = ws;
    ws.onmessage = (event) => {
      if (this._probe !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type !== "welcome") return;
      this._probe = null;
      this._closeSse();
      this._wsFailures = 0;
      this.transport = "websocket";
      this._ws = ws;
      ws.onmessage = (e) => this._ws === ws && this._onText(e.data);
      ws.onclose = (e) => this._ws === ws && this._onClosed(e);
      this._onWelcome(frame);
    };
    ws.onclose = () => {
      if (this._probe !== ws) return;
      this._probe = null;
      this._scheduleProbe();
    };
  }

  _stopTransport(code, reason) {
    clearInterval(this._pinger);
    clearTimeout(this._probeTimer);
    this._closeSse();
    const probe = this._probe;
    this._probe = null;
    if (probe && probe.readyState <= WebSocket.OPEN) probe.close(1000, "");
    const ws = this._ws;
    this._ws = null;
    this._welcomed = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }

  _onClosed(event) {
    const [wasWebSocket, opened] = [this.transport === "websocket", this._welcomed];
    this._stopTransport(1000, "");
    if (this._stopped) return;
    // The browser shows a refused upgrade (404, 403, 503) only as a failed
    // connection: attempts in a row that never opened lead to SSE.
    if (wasWebSocket) this._wsFailures = opened ? 0 : this._wsFailures + 1;
    const draining = event.code === CLOSE_GOING_AWAY;
    const toSse = wasWebSocket && this._useSse();
    // A drained connection was healthy: come back soon, spread like the server
    // spread its closes. A switch to SSE tries it at once. Anything else backs off
    // further on each attempt.
    const delay = draining
      ? Math.random() * DRAIN_SPREAD_MS
      : toSse
        ? 0
        : backoffDelay(this._attempt++);
    this._setState("reconnecting", { code: event.code, reason: event.reason, delay });
    this._timer = setTimeout(() => this._open(), delay);
  }

  _onText(text) {
    this._lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    switch (frame.type) {
      case "message":
        return this._onMessage(frame);
      case "welcome":
        return this._onWelcome(frame);
      case "gap":
        return this.options.onGap?.(frame);
      case "error":
        return this.options.onError?.(frame);
      case "token_expiring":
        return this._refreshToken();
      default:
        return undefined;
    }
  }

  _onWelcome(welcome) {
    const epoch = typeof welcome.epoch === "string" && welcome.epoch ? welcome.epoch : null;
    if (welcome.epoch === "" && this._epoch !== null && this._position !== null) {
      // A JetStream server that does not know its stream yet (epoch "": starting,
      // or NATS down): it would refuse the resume, and live delivery alone would
      // skip what we missed. Keep the position and come back shortly. The
      // WebSocket itself opened: no step towards the SSE fallback.
      this._welcomed = true;
      this._onClosed({ code: 0, reason: "server not ready to resume" });
      return;
    }
    const resume = epoch !== null && epoch === this._epoch && this._position !== null;
    if (!resume) {
      // A new sequence space: positions from the last one mean nothing here.
      this._lastSeq.clear();
      this._position = null;
    }
    // Without a resume, whatever was published while we were away is lost.
    const lost = this._everOpened && this._patterns.size > 0 && !resume;
    this._epoch = epoch;
    this._welcomed = true;
    this._attempt = 0;
    this._startPinger(welcome.ping_interval_ms);
    this._setState("open", { session: welcome.session, server: welcome.server });
    this._resubscribe(resume);
    if (lost) {
      this.options.onGap?.({ type: "gap", channels: [...this._patterns.keys()], reason: "reconnected" });
    }
    this._everOpened = true;
  }

  /** Every held pattern again, with the position when the epoch allows a resume. */
  _resubscribe(resume) {
    const plain = [...this._patterns.keys()].filter(
      (p) => ![...this._subs].some((s) => s.snapshot && s.channels.includes(p)),
    );
    const withSnapshot = [...this._patterns.keys()].filter((p) => !plain.includes(p));
    if (plain.length) this._send(this._subscribeFrame(plain, false, resume));
    if (withSnapshot.length) this._send(this._subscribeFrame(withSnapshot, true, resume));
  }

  _subscribeFrame(channels, snapshot, resume) {
    const frame = { type: "subscribe", channels, id: this._nextId++ };
    if (resume) frame.since = { epoch: this._epoch, seq: this._position };
    if (snapshot) frame.snapshot = true;
    return frame;
  }

  _onMessage(message) {
    const seq = message.seq;
    if (typeof seq === "number") {
      const last = this._lastSeq.get(message.channel);
      if (last !== undefined && seq <= last) return; // already delivered
      this._lastSeq.set(message.channel, seq);
      if (this._position === null || seq > this._position) this._position = seq;
    }
    for (const sub of this._subs) {
      if (sub.active && sub.matches(message.channel)) sub.handler(message);
    }
  }

  /** Application pings find a dead connection that TCP alone would not report. */
  _startPinger(intervalMs) {
    clearInterval(this._pinger);
    const every = Number(intervalMs) > 0 ? Number(intervalMs) : 30000;
    this._lastFrameAt = Date.now();
    this._pinger = setInterval(() => {
      if (Date.now() - this._lastFrameAt > 2 * every) {
        this._onClosed({ code: 0, reason: "no answer to pings" });
      } else {
        this._send({ type: "ping" });
      }
    }, every);
  }

  /** `token` given as a function is asked for a new one when the server says so. */
  async _refreshToken() {
    if (typeof this.options.token !== "function") return;
    const token = await this.options.token();
    if (token) this._send({ type: "refresh", token });
  }

  _send(frame) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify(frame));
    }
  }

  /** Tells onState of a new state, or of the same one on another transport. */
  _setState(state, detail = {}) {
    const same = this.state === state && this._stateTransport === this.transport;
    if (same && state !== "reconnecting") return;
    this.state = state;
    this._stateTransport = this.transport;
    this.options.onState?.(state, { ...detail, transport: this.transport });
  }
}

export default OdinWS;
