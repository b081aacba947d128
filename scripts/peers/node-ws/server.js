// A plain Node `ws` broadcast server fed by NATS: the peer odin-ws is compared
// with in scripts/bench. It speaks odin-ws's client protocol (welcome, subscribe
// acks, message frames with seq) so that the same load tool drives it, and it is
// written the way such a server usually is: one JSON string per broadcast, sent
// with ws.send() to every matching client (ws frames it again per client).
//
// Settings: PORT (3003), NATS_URL (nats://127.0.0.1:4222), NATS_SUBJECTS (odin.>).
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');
const { connect } = require('nats');

const PORT = Number(process.env.PORT || 3003);
const NATS_URL = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const SUBJECTS = (process.env.NATS_SUBJECTS || 'odin.>').split(',');

const literal = new Map(); // channel -> Set of sockets
const patterns = new Map(); // pattern with * or > -> { tokens, sockets }
let seq = 0;
let sessions = 0;
let connections = 0;

function matches(tokens, subject) {
  const parts = subject.split('.');
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === '>') return parts.length > i;
    if (i >= parts.length) return false;
    if (tokens[i] !== '*' && tokens[i] !== parts[i]) return false;
  }
  return parts.length === tokens.length;
}

function subscribe(ws, channel) {
  if (ws.subs.has(channel)) return;
  ws.subs.add(channel);
  if (channel.includes('*') || channel.includes('>')) {
    let p = patterns.get(channel);
    if (!p) {
      p = { tokens: channel.split('.'), sockets: new Set() };
      patterns.set(channel, p);
    }
    p.sockets.add(ws);
  } else {
    let s = literal.get(channel);
    if (!s) {
      s = new Set();
      literal.set(channel, s);
    }
    s.add(ws);
  }
}

function unsubscribe(ws, channel) {
  if (!ws.subs.delete(channel)) return;
  const p = patterns.get(channel);
  if (p) {
    p.sockets.delete(ws);
    if (p.sockets.size === 0) patterns.delete(channel);
    return;
  }
  const s = literal.get(channel);
  if (s) {
    s.delete(ws);
    if (s.size === 0) literal.delete(channel);
  }
}

function broadcast(subject, data) {
  seq++;
  const text = Buffer.from(data).toString('utf8');
  const payload = /^\s*[{["\d-]/.test(text) ? text : JSON.stringify(text);
  const frame = `{"type":"message","channel":${JSON.stringify(subject)},"seq":${seq},"data":${payload}}`;
  const direct = literal.get(subject);
  if (direct) for (const ws of direct) ws.send(frame);
  for (const p of patterns.values()) {
    if (!matches(p.tokens, subject)) continue;
    for (const ws of p.sockets) {
      if (direct && direct.has(ws)) continue;
      ws.send(frame);
    }
  }
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    const body = {
      status: 'ok',
      connections,
      memory_bytes: process.memoryUsage().rss,
      cpu_percent: null,
    };
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      connection: 'close',
    });
    res.end(text);
    return;
  }
  res.writeHead(404, { connection: 'close' });
  res.end();
});

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false, backlog: 4096 });

wss.on('connection', (ws) => {
  connections++;
  ws.subs = new Set();
  ws.send(
    JSON.stringify({ type: 'welcome', session: String(++sessions), server: 'node-ws', ping_interval_ms: 30000 }),
  );
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.close(1003);
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      msg = null;
    }
    // As odin-ws: anything but a JSON object is invalid_json (`null` would throw below).
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      return ws.send(JSON.stringify({ type: 'error', code: 'invalid_json', message: 'not a JSON request object' }));
    }
    const id = msg.id === undefined ? {} : { id: msg.id };
    const channels = Array.isArray(msg.channels) ? msg.channels.filter((c) => typeof c === 'string') : [];
    if (msg.type === 'subscribe') {
      for (const c of channels) subscribe(ws, c);
      ws.send(JSON.stringify({ type: 'subscribed', channels, ...id }));
    } else if (msg.type === 'unsubscribe') {
      for (const c of channels) unsubscribe(ws, c);
      ws.send(JSON.stringify({ type: 'unsubscribed', channels, ...id }));
    } else if (msg.type === 'ping') {
      ws.send(JSON.stringify({ type: 'pong', ...id }));
    } else {
      ws.send(JSON.stringify({ type: 'error', code: 'unknown_type', message: 'unknown type', ...id }));
    }
  });
  ws.on('close', () => {
    connections--;
    for (const c of [...ws.subs]) unsubscribe(ws, c);
  });
  ws.on('error', () => {});
});

async function main() {
  const nc = await connect({ servers: NATS_URL, name: 'node-ws-peer' });
  for (const s of SUBJECTS) {
    nc.subscribe(s, { callback: (err, m) => err || broadcast(m.subject, m.data) });
  }
  server.listen(PORT, '127.0.0.1', () => {
    console.error(`node-ws listening on 127.0.0.1:${PORT}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
