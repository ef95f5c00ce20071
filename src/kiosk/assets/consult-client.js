/**
 * consult-client.js — the consult-edge protocol client (one ES module, no dependencies).
 *
 * Reusable by the kiosk page and by native kiosk apps with a web view. See docs/kiosk.md.
 *
 * What it does:
 *  - connects to `/v1/ws` on the gateway (ws: or wss: by the page's protocol) and authenticates
 *    with the first frame `{"type":"auth","token":...}` (browsers cannot set headers);
 *  - re-joins every joined consultation after each `ready` with `after` = the highest seq seen
 *    without a gap, and drops `message`s whose seq it has already seen (no loss, no repeat);
 *  - `send()` gives each message a `client_id`; its delivery state goes `queued` → `sent` →
 *    `acked` (or `failed`); un-acked messages are re-sent after a reconnect with the SAME
 *    client_id (the server is idempotent per client_id);
 *  - on `token_expiring` it calls `POST /v1/auth/refresh` and sends `renew` on the open socket;
 *  - after a close in 1000–1011 or 4000–4499 it reconnects with exponential backoff and jitter
 *    (4001: refresh the token first); 4500–4999 (4503 revoked, 4508 idle) are final.
 *
 * Events (`client.on(name, fn)`):
 *  - `state`    {state}                 idle|connecting|authenticating|ready|reconnecting|closed
 *  - `ready`    the server's `ready` frame
 *  - `joined`   the server's `joined` frame
 *  - `message`  a `message` frame never seen before (in seq order per consultation)
 *  - `delivery` {client_id, consultation, body, state, seq?, error?}
 *  - `presence` the server's `presence` frame
 *  - `consultation_closed` the server's frame
 *  - `tokens`   {access_token, refresh_token} after each refresh (persist them if you want)
 *  - `renewed`  the server's `renewed` frame
 *  - `error`    a server `error` frame, or {code:'refresh_failed'|'http', ...}
 *  - `closed`   {code, final, reason}: every socket close; `final` means no reconnect follows
 *
 * @example
 *   import { ConsultClient } from './consult-client.js';
 *   const c = new ConsultClient({ accessToken, refreshToken });
 *   c.on('message', (m) => show(m));
 *   c.connect();
 *   c.join('c-42');
 *   c.send('c-42', 'hello');
 */

/** Delay before the first reconnect; doubled on every failed attempt. */
export const RECONNECT_BASE_MS = 500;
/** Upper bound of the reconnect delay, so a kiosk comes back within half a minute. */
export const RECONNECT_MAX_MS = 30000;
/** If the server has not closed the socket this long after logout, close it ourselves. */
export const LOGOUT_CLOSE_WAIT_MS = 3000;
/** Retry delay of a send refused with `rate_limited` (the server allows 50/s, burst 100). */
export const RATE_LIMIT_RETRY_MS = 1000;
/** Refresh ahead of `exp` when reconnecting, so the token does not die during the handshake. */
export const EXPIRY_MARGIN_S = 5;
/** The server's limit on `client_id` length (SPEC section 5). */
export const CLIENT_ID_MAX = 64;

/** Close codes of SPEC section 5, by name. */
export const CLOSE = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, UNSUPPORTED: 1003, ABNORMAL: 1006, BAD_UTF8: 1007,
  POLICY: 1008, TOO_BIG: 1009, INTERNAL: 1011, AUTH_TIMEOUT: 4000, TOKEN_EXPIRED: 4001,
  HEARTBEAT_TIMEOUT: 4004, SESSION_LIMIT: 4009, SLOW_CONSUMER: 4029, REVOKED: 4503, IDLE: 4508,
});

/** True for closes after which the client must not reconnect by itself (4500–4999). */
export function isFinalClose(code) {
  return code >= 4500 && code <= 4999;
}

/** Decode a JWT's payload for display only (never trusted: the server verifies). */
export function decodeJwtPayload(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (_) {
    return null;
  }
}

/** An HTTP error from the gateway: `status` and the body's `{error:{code,message}}`. */
export class HttpError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

function newClientId() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** Seen seqs of one consultation: `floor` = every seq ≤ floor was seen; `above` the rest. */
class SeqSet {
  constructor() { this.floor = 0; this.above = new Set(); }
  has(seq) { return seq <= this.floor || this.above.has(seq); }
  add(seq) {
    if (this.has(seq)) return false;
    this.above.add(seq);
    while (this.above.delete(this.floor + 1)) this.floor += 1;
    return true;
  }
}

export class ConsultClient {
  /**
   * @param {object} opts
   * @param {string} opts.accessToken   access JWT
   * @param {string} [opts.refreshToken] refresh JWT (without it, no renewal)
   * @param {string} [opts.origin]       gateway origin, e.g. `https://gw.local:8443`; default
   *                                     the page's own origin
   */
  constructor({ accessToken, refreshToken = '', origin } = {}) {
    /** Current access token (replaced on refresh). */
    this.accessToken = accessToken;
    /** Current refresh token (rotates on every refresh). */
    this.refreshToken = refreshToken;
    /** Gateway origin for HTTP calls; the socket URL is derived from it. */
    this.origin = origin || globalThis.location.origin;
    /** Connection state; changed only through #setState. */
    this.state = 'idle';
    /** The server's last `ready` frame, or null before the first one. */
    this.session = null;
    /** event name → Set of handler functions. */
    this.handlers = new Map();
    /** The live WebSocket, or null between connections. */
    this.ws = null;
    /** Consultations to (re)join on every `ready`. */
    this.joinedIds = new Set();
    /** consultation → SeqSet of seqs already delivered to the app. */
    this.seen = new Map();
    /** client_id → {client_id, consultation, body, state}: sent and not yet acked. */
    this.outbox = new Map();
    /** Failed connection attempts since the last `ready` (drives the backoff). */
    this.attempt = 0;
    /** Pending reconnect timer, or null. */
    this.reconnectTimer = null;
    /** True after close() or logout(): no reconnect, closes are final. */
    this.stopped = false;
    /** True after logout(): the final close is reported as 4503 (signed out). */
    this.loggedOut = false;
    /** Fallback timer closing the socket if the server does not after logout. */
    this.logoutTimer = null;
    /** The in-flight refresh promise, so concurrent callers share one exchange. */
    this.refreshing = null;
    /** The in-flight answer to `token_expiring` (refresh, then `renew`), or null. */
    this.renewing = null;
  }

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.handlers.get(event).delete(fn);
  }

  emit(event, data) {
    for (const fn of this.handlers.get(event) || []) {
      try { fn(data); } catch (e) { console.error('consult-client handler', event, e); }
    }
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', { state });
  }

  /** The WebSocket URL: `/v1/ws` on the gateway, wss: when the gateway is https:. */
  socketUrl() {
    const u = new URL('/v1/ws', this.origin);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
  }

  /** Open the socket (idempotent while connecting or connected). */
  connect() {
    if (this.ws || this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.#setState('connecting');
    const ws = new WebSocket(this.socketUrl());
    this.ws = ws;
    ws.onopen = () => {
      this.#setState('authenticating');
      ws.send(JSON.stringify({ type: 'auth', token: this.accessToken }));
    };
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch (_) { return; }
      if (frame && typeof frame.type === 'string') this.#onFrame(frame);
    };
    ws.onclose = (ev) => this.#onClose(ws, ev.code, ev.reason);
  }

  #sendFrame(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.state !== 'ready') return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  #onFrame(f) {
    switch (f.type) {
      case 'ready':
        this.session = f;
        this.attempt = 0;
        this.#setState('ready');
        this.emit('ready', f);
        for (const id of this.joinedIds) this.#sendJoin(id);
        break;
      case 'joined':
        this.emit('joined', f);
        // Replay is complete: whatever is still un-acked for it was lost in flight; re-send.
        for (const m of this.outbox.values()) {
          if (m.consultation === f.consultation) this.#transmit(m);
        }
        break;
      case 'message': {
        const seen = this.#seen(f.consultation);
        if (!seen.add(f.seq)) break;
        const mine = f.client_id && this.outbox.get(f.client_id);
        if (mine && this.session && f.from === this.session.user) {
          // Our own message, stored before a lost ack: it is delivered.
          this.#acked(mine, f.seq);
        } else {
          this.emit('message', f);
        }
        break;
      }
      case 'ack': {
        this.#seen(f.consultation).add(f.seq);
        const m = this.outbox.get(f.client_id);
        if (m) this.#acked(m, f.seq);
        break;
      }
      case 'presence': this.emit('presence', f); break;
      case 'consultation_closed': this.emit('consultation_closed', f); break;
      case 'token_expiring': this.#onTokenExpiring(f); break;
      case 'renewed': this.emit('renewed', f); break;
      case 'error': this.#onError(f); break;
      default: break;
    }
  }

  #seen(id) {
    if (!this.seen.has(id)) this.seen.set(id, new SeqSet());
    return this.seen.get(id);
  }

  #acked(m, seq) {
    this.outbox.delete(m.client_id);
    m.state = 'acked';
    m.seq = seq;
    this.emit('delivery', { ...m });
  }

  #onError(f) {
    const m = f.ref && this.outbox.get(f.ref);
    if (m && f.code === 'rate_limited') {
      setTimeout(() => this.outbox.has(m.client_id) && this.#transmit(m), RATE_LIMIT_RETRY_MS);
    } else if (m) {
      this.outbox.delete(m.client_id);
      m.state = 'failed';
      m.error = f.code;
      this.emit('delivery', { ...m });
    }
    this.emit('error', f);
  }

  #sendJoin(id) {
    this.#sendFrame({ type: 'join', consultation: id, after: this.#seen(id).floor });
  }

  /** Follow a consultation: replay what was missed, then live messages. Survives reconnects. */
  join(id) {
    if (this.joinedIds.has(id)) return;
    this.joinedIds.add(id);
    this.#sendJoin(id);
  }

  /** Stop following a consultation. */
  leave(id) {
    if (!this.joinedIds.delete(id)) return;
    this.#sendFrame({ type: 'leave', consultation: id });
  }

  /** Send a chat message; returns its client_id. Delivery is reported by `delivery` events. */
  send(consultation, body) {
    const m = { client_id: newClientId().slice(0, CLIENT_ID_MAX), consultation, body, state: 'queued' };
    this.outbox.set(m.client_id, m);
    this.emit('delivery', { ...m });
    this.#transmit(m);
    return m.client_id;
  }

  #transmit(m) {
    if (this.#sendFrame({ type: 'send', consultation: m.consultation, client_id: m.client_id, body: m.body })) {
      if (m.state !== 'sent') {
        m.state = 'sent';
        this.emit('delivery', { ...m });
      }
    }
  }

  /** Exchange the refresh token for a new pair (one exchange at a time). */
  refresh() {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        if (!this.refreshToken) throw new HttpError(401, 'unauthorized', 'no refresh token');
        const r = await this.#fetch('POST', '/v1/auth/refresh', { refresh_token: this.refreshToken }, false);
        this.accessToken = r.access_token;
        this.refreshToken = r.refresh_token;
        this.emit('tokens', { access_token: r.access_token, refresh_token: r.refresh_token });
        return r;
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  /**
   * One renewal per warning: a warning for an `exp` older than our current token's is stale
   * (already renewed), and a warning while a renewal is in flight is answered by that renewal.
   */
  #onTokenExpiring(f) {
    if (this.renewing) return;
    const current = decodeJwtPayload(this.accessToken);
    const warned = typeof f.exp === 'number' ? f.exp : null;
    if (warned !== null && current && typeof current.exp === 'number' && current.exp > warned) return;
    this.renewing = this.#renew().finally(() => { this.renewing = null; });
  }

  async #renew() {
    try {
      await this.refresh();
      this.#sendFrame({ type: 'renew', token: this.accessToken });
    } catch (e) {
      this.emit('error', { code: 'refresh_failed', message: String(e.message || e) });
    }
  }

  #tokenNearExpiry() {
    const p = decodeJwtPayload(this.accessToken);
    return !p || typeof p.exp !== 'number' || p.exp - EXPIRY_MARGIN_S <= Date.now() / 1000;
  }

  #onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.logoutTimer);
    for (const m of this.outbox.values()) {
      // Not acked before the close: it will be sent again with the same client_id.
      if (m.state === 'sent') {
        m.state = 'queued';
        this.emit('delivery', { ...m });
      }
    }
    const final = this.stopped || isFinalClose(code);
    if (this.loggedOut) {
      // Our own fallback close after logout still means "signed out" to the person.
      this.emit('closed', { code: CLOSE.REVOKED, final: true, reason: 'logged_out' });
    } else {
      this.emit('closed', { code, final, reason: reason || '' });
    }
    if (final) {
      this.stopped = true;
      this.#setState('closed');
      return;
    }
    this.#setState('reconnecting');
    this.#scheduleReconnect(code);
  }

  /** Exponential backoff with "equal jitter": half the delay fixed, half random. */
  #scheduleReconnect(code) {
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
    const jittered = delay / 2 + Math.random() * (delay / 2);
    this.reconnectTimer = setTimeout(() => this.#reconnect(code), jittered);
  }

  async #reconnect(code) {
    if (this.stopped) return;
    if ((code === CLOSE.TOKEN_EXPIRED || this.#tokenNearExpiry()) && this.refreshToken) {
      try {
        await this.refresh();
      } catch (e) {
        if (e instanceof HttpError && (e.status === 401 || e.status === 403)) {
          // The login is gone (revoked or reused refresh token): nothing to reconnect with.
          this.stopped = true;
          this.#setState('closed');
          this.emit('closed', { code: CLOSE.REVOKED, final: true, reason: 'refresh_failed' });
          return;
        }
        // Network trouble: try again later with the same backoff.
        this.#scheduleReconnect(code);
        return;
      }
    }
    this.connect();
  }

  /** Close for good (no reconnect). */
  close() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.ws.close(CLOSE.NORMAL);
    else this.#setState('closed');
  }

  /**
   * Log out: revoke the login session on the server. The server then closes this socket with
   * 4503, reported as a final `closed` event.
   */
  async logout() {
    try {
      await this.#fetch('POST', '/v1/auth/logout', undefined, false);
    } finally {
      this.stopped = true;
      this.loggedOut = true;
      clearTimeout(this.reconnectTimer);
      if (this.ws) {
        this.logoutTimer = setTimeout(() => this.ws && this.ws.close(CLOSE.NORMAL), LOGOUT_CLOSE_WAIT_MS);
      } else if (this.state !== 'closed') {
        // No socket and no close reported yet (e.g. between reconnects): report it once here.
        // When the server's 4503 already closed the socket, `closed` was emitted by #onClose.
        this.#setState('closed');
        this.emit('closed', { code: CLOSE.REVOKED, final: true, reason: 'logged_out' });
      }
    }
  }

  /** My consultations, newest first. */
  async listConsultations() {
    return (await this.#fetch('GET', '/v1/consultations')).consultations;
  }

  /** Start a consultation with a doctor (patients only). */
  createConsultation(doctor) {
    return this.#fetch('POST', '/v1/consultations', { doctor });
  }

  getConsultation(id) {
    return this.#fetch('GET', `/v1/consultations/${encodeURIComponent(id)}`);
  }

  /** Stored messages with seq > after, ascending. */
  async messages(id, after = 0, limit = 100) {
    const q = `after=${encodeURIComponent(after)}&limit=${encodeURIComponent(limit)}`;
    return (await this.#fetch('GET', `/v1/consultations/${encodeURIComponent(id)}/messages?${q}`)).messages;
  }

  closeConsultation(id) {
    return this.#fetch('POST', `/v1/consultations/${encodeURIComponent(id)}/close`, {});
  }

  /** One HTTP call; on 401 with a refresh token, refresh once and retry. */
  async #fetch(method, path, body, retry = true) {
    const headers = { Accept: 'application/json' };
    const isRefresh = path === '/v1/auth/refresh';
    if (!isRefresh) headers.Authorization = `Bearer ${this.accessToken}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(new URL(path, this.origin), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store', credentials: 'omit',
    });
    if (res.status === 401 && retry && this.refreshToken) {
      await this.refresh();
      return this.#fetch(method, path, body, false);
    }
    if (res.status === 204) return null;
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new HttpError(res.status, err.code || 'http', err.message || res.statusText);
    }
    return data;
  }
}
