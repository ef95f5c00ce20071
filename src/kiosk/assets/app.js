// app.js — the kiosk page: a thin view over consult-client.js (all protocol logic lives there).
// Renders with textContent only: chat bodies come from other people and are never HTML.
import { ConsultClient, decodeJwtPayload, isFinalClose } from './consult-client.js';

/** Keys in sessionStorage: survive a reload of this tab, gone when the kiosk tab closes. */
const STORE_TOKENS = 'consult-edge.tokens';
const STORE_OPEN = 'consult-edge.open';

const TEXT = {
  en: {
    title: 'Online consultation', lang_switch: '中文', logout: 'Sign out', login_title: 'Sign in',
    access_token: 'Access token', refresh_token: 'Refresh token', login_button: 'Start',
    restart: 'Back to start', my_consultations: 'My consultations', doctor_id: 'Doctor ID',
    new_consultation: 'Start a consultation', reload_list: 'Refresh list',
    close_consultation: 'End consultation', send: 'Send', composer_placeholder: 'Type your message',
    patient: 'Patient', doctor: 'Doctor', admin: 'Administrator',
    state_idle: 'Not connected', state_connecting: 'Connecting…', state_authenticating: 'Signing in…',
    state_ready: 'Connected', state_reconnecting: 'Reconnecting…', state_closed: 'Disconnected',
    online: 'online', offline: 'not here yet', with_doctor: 'Doctor', with_patient: 'Patient',
    delivery_queued: 'waiting to send', delivery_sent: 'sending…', delivery_acked: 'delivered',
    delivery_failed: 'not sent', you: 'You', open: 'open', closed: 'ended',
    consultation_closed: 'This consultation has ended. You can still read it.',
    bad_token: 'This sign-in code is not valid. Please ask staff for help.',
    request_failed: 'Something went wrong. Please try again.', empty_list: 'No consultations yet.',
    close_1000: 'The connection was closed. Reconnecting…',
    close_1001: 'The service is restarting. Reconnecting in a moment…',
    close_1003: 'The app sent something the service could not read. Reconnecting…',
    close_1007: 'The app sent unreadable text. Reconnecting…',
    close_1008: 'Your sign-in was not accepted. Trying again…',
    close_1009: 'A message was too large to send. Reconnecting…',
    close_1011: 'The service had a problem. Reconnecting…',
    close_4000: 'Signing in took too long. Reconnecting…',
    close_4001: 'Your sign-in expired. Renewing it and reconnecting…',
    close_4004: 'The connection was lost. Reconnecting…',
    close_4009: 'This session reached its time limit. Reconnecting…',
    close_4029: 'The connection is too slow. Reconnecting…',
    close_4503: 'You have been signed out. To continue, please ask staff to sign you in again.',
    close_4508: 'You were away for a while, so the session ended to protect your privacy.',
    close_other: 'The connection was interrupted. Reconnecting…',
    close_final_other: 'The session has ended.',
  },
  zh: {
    title: '在线问诊', lang_switch: 'English', logout: '退出登录', login_title: '登录',
    access_token: '访问令牌', refresh_token: '刷新令牌', login_button: '开始',
    restart: '返回首页', my_consultations: '我的问诊', doctor_id: '医生编号',
    new_consultation: '发起问诊', reload_list: '刷新列表',
    close_consultation: '结束问诊', send: '发送', composer_placeholder: '请输入消息',
    patient: '患者', doctor: '医生', admin: '管理员',
    state_idle: '未连接', state_connecting: '正在连接…', state_authenticating: '正在登录…',
    state_ready: '已连接', state_reconnecting: '正在重新连接…', state_closed: '已断开',
    online: '在线', offline: '尚未进入', with_doctor: '医生', with_patient: '患者',
    delivery_queued: '等待发送', delivery_sent: '发送中…', delivery_acked: '已送达',
    delivery_failed: '发送失败', you: '我', open: '进行中', closed: '已结束',
    consultation_closed: '本次问诊已结束，您仍可查看记录。',
    bad_token: '登录码无效，请联系工作人员。',
    request_failed: '操作失败，请重试。', empty_list: '暂无问诊。',
    close_1000: '连接已关闭，正在重新连接…',
    close_1001: '服务正在重启，稍后自动重新连接…',
    close_1003: '应用发送了服务无法识别的数据，正在重新连接…',
    close_1007: '应用发送了无法识别的文字，正在重新连接…',
    close_1008: '登录信息未被接受，正在重试…',
    close_1009: '消息太大，无法发送，正在重新连接…',
    close_1011: '服务出现故障，正在重新连接…',
    close_4000: '登录超时，正在重新连接…',
    close_4001: '登录已过期，正在续期并重新连接…',
    close_4004: '网络连接中断，正在重新连接…',
    close_4009: '本次会话已达到时长上限，正在重新连接…',
    close_4029: '网络太慢，正在重新连接…',
    close_4503: '您已退出登录。如需继续，请联系工作人员重新登录。',
    close_4508: '您已离开一段时间，为保护您的隐私，本次会话已结束。',
    close_other: '连接中断，正在重新连接…',
    close_final_other: '会话已结束。',
  },
};

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

/** The whole view state; the DOM is re-derived from it by the render functions. */
const ui = {
  lang: (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en',
  client: null,
  me: null,
  consultations: [],
  open: null,
  presence: new Map(),
  notice: null,
  /** Close codes seen by this page, oldest first (for operators and the browser test). */
  closes: [],
  /** How many new messages the client delivered to this page (duplicates never count). */
  received: 0,
  /** How many times the access token was renewed on the open socket. */
  renewals: 0,
};

function t(key) {
  return TEXT[ui.lang][key] ?? TEXT.en[key] ?? key;
}

function applyLanguage() {
  document.documentElement.lang = ui.lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  renderWho();
  renderConn();
  renderNotice();
  renderList();
  renderChat();
  for (const li of $('messages').children) renderMeta(li);
}

function renderWho() {
  $('whoami').textContent = ui.me ? `${t(ui.me.role) || ui.me.role} ${ui.me.sub}` : '';
}

function renderConn() {
  const state = ui.client ? ui.client.state : 'idle';
  $('conn-state').dataset.state = state;
  $('conn-state').textContent = t(`state_${state}`);
}

function closeText(code, final) {
  if (TEXT.en[`close_${code}`]) return t(`close_${code}`);
  return t(final ? 'close_final_other' : 'close_other');
}

function renderNotice() {
  const el = $('notice');
  const n = ui.notice;
  // A final close is shown on the final card instead of the banner.
  el.hidden = !n || Boolean(n.final && n.code);
  if (!n) return;
  el.textContent = n.code ? closeText(n.code, n.final) : t(n.key);
  el.dataset.code = n.code ? String(n.code) : '';
  el.dataset.final = String(Boolean(n.final));
  if (n.final && n.code) {
    $('final-text').textContent = closeText(n.code, true);
  }
}

function setNotice(n) {
  ui.notice = n;
  renderNotice();
}

function show(view) {
  $('login').hidden = view !== 'login';
  $('workspace').hidden = view !== 'workspace';
  $('final').hidden = view !== 'final';
  $('logout').hidden = view !== 'workspace';
}

function renderList() {
  const ul = $('consultation-list');
  ul.replaceChildren();
  if (ui.consultations.length === 0) {
    const li = document.createElement('li');
    li.textContent = t('empty_list');
    li.dataset.testid = 'empty-list';
    ul.append(li);
  }
  for (const c of ui.consultations) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.testid = 'consultation-item';
    b.dataset.id = c.id;
    b.dataset.state = c.state;
    if (ui.open && ui.open.id === c.id) b.setAttribute('aria-current', 'true');
    b.textContent = `${otherLabel(c)} · ${t(c.state === 'closed' ? 'closed' : 'open')}`;
    b.addEventListener('click', () => openConsultation(c));
    li.append(b);
    ul.append(li);
  }
  $('new-form').hidden = !(ui.me && ui.me.role === 'patient');
}

function otherOf(c) {
  return ui.me && ui.me.sub === c.patient ? c.doctor : c.patient;
}

function otherLabel(c) {
  const isPatient = ui.me && ui.me.sub === c.patient;
  return `${t(isPatient ? 'with_doctor' : 'with_patient')} ${otherOf(c)}`;
}

function renderChat() {
  const c = ui.open;
  $('chat').hidden = !c;
  if (!c) return;
  $('chat-title').textContent = otherLabel(c);
  const online = ui.presence.get(`${c.id}/${otherOf(c)}`) === true;
  $('presence').dataset.online = String(online);
  $('presence').textContent = t(online ? 'online' : 'offline');
  const closed = c.state === 'closed';
  $('consultation-closed').hidden = !closed;
  $('consultation-closed').textContent = t('consultation_closed');
  $('composer').disabled = closed;
  $('send').disabled = closed;
  $('close-consultation').hidden = closed;
}

function renderMeta(li) {
  const meta = li.querySelector('.meta');
  const who = li.dataset.mine === 'true' ? t('you') : li.dataset.from;
  const when = li.dataset.ts ? new Date(li.dataset.ts).toLocaleTimeString(ui.lang === 'zh' ? 'zh-CN' : 'en') : '';
  const state = li.dataset.mine === 'true' ? ` · ${t(`delivery_${li.dataset.state}`)}` : '';
  meta.textContent = `${who} ${when}${state}`;
  const d = li.querySelector('[data-testid="delivery"]');
  if (d) d.dataset.state = li.dataset.state;
}

/** Insert or update one message bubble, kept in seq order (un-acked ones at the end). */
function putMessage({ seq, from, body, client_id: clientId, ts, state }) {
  const list = $('messages');
  let li = clientId ? list.querySelector(`li[data-client-id="${CSS.escape(clientId)}"]`) : null;
  if (!li && seq) li = list.querySelector(`li[data-seq="${seq}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.testid = 'message';
    const b = document.createElement('span');
    b.className = 'body';
    b.dataset.testid = 'message-body';
    b.textContent = body;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.dataset.testid = 'delivery';
    li.append(b, meta);
    li.dataset.from = from;
    li.dataset.mine = String(Boolean(ui.me && from === ui.me.sub));
    if (clientId) li.dataset.clientId = clientId;
  } else {
    li.remove();
  }
  if (seq) li.dataset.seq = String(seq);
  if (ts) li.dataset.ts = ts;
  li.dataset.state = state || 'acked';
  renderMeta(li);
  const after = seq
    ? Array.from(list.children).find((x) => !x.dataset.seq || Number(x.dataset.seq) > seq)
    : null;
  list.insertBefore(li, after || null);
  list.scrollTop = list.scrollHeight;
}

async function refreshList() {
  try {
    ui.consultations = await ui.client.listConsultations();
    const cur = ui.open && ui.consultations.find((c) => c.id === ui.open.id);
    if (cur) ui.open = cur;
    renderList();
    renderChat();
  } catch (e) {
    console.warn('list failed', e);
    setNotice({ key: 'request_failed' });
  }
}

function openConsultation(c) {
  if (ui.open && ui.open.id === c.id) return;
  if (ui.open) ui.client.leave(ui.open.id);
  ui.open = c;
  sessionStorage.setItem(STORE_OPEN, c.id);
  $('messages').replaceChildren();
  ui.client.join(c.id);
  renderList();
  renderChat();
}

function saveTokens(access, refresh) {
  sessionStorage.setItem(STORE_TOKENS, JSON.stringify({ access, refresh }));
}

function start(access, refresh, openId) {
  const claims = decodeJwtPayload(access);
  if (!claims || !claims.sub) {
    setNotice({ key: 'bad_token' });
    return;
  }
  ui.me = { sub: String(claims.sub), role: String(claims.role || '') };
  saveTokens(access, refresh);
  const client = new ConsultClient({ accessToken: access, refreshToken: refresh });
  ui.client = client;
  client.on('state', () => renderConn());
  client.on('ready', async (r) => {
    ui.me.sub = r.user;
    setNotice(null);
    renderWho();
    await refreshList();
    const want = openId || sessionStorage.getItem(STORE_OPEN);
    openId = null;
    const c = want && ui.consultations.find((x) => x.id === want);
    if (c && !ui.open) openConsultation(c);
  });
  client.on('tokens', (p) => saveTokens(p.access_token, p.refresh_token));
  client.on('renewed', () => { ui.renewals += 1; });
  client.on('message', (m) => {
    ui.received += 1;
    if (ui.open && m.consultation === ui.open.id) putMessage({ ...m, state: 'acked' });
  });
  client.on('delivery', (d) => {
    if (ui.open && d.consultation === ui.open.id) {
      putMessage({ seq: d.seq, from: ui.me.sub, body: d.body, client_id: d.client_id, state: d.state });
    }
  });
  client.on('presence', (p) => {
    ui.presence.set(`${p.consultation}/${p.user}`, p.online);
    renderChat();
  });
  client.on('joined', (j) => {
    if (ui.open && ui.open.id === j.consultation && ui.open.state !== j.state) {
      ui.open = { ...ui.open, state: j.state };
      renderChat();
    }
  });
  client.on('consultation_closed', () => refreshList());
  client.on('closed', ({ code, final }) => {
    ui.closes.push(code);
    setNotice({ code, final });
    if (final) {
      sessionStorage.removeItem(STORE_TOKENS);
      sessionStorage.removeItem(STORE_OPEN);
      // The next person at the kiosk must not see who was signed in.
      ui.me = null;
      ui.open = null;
      $('messages').replaceChildren();
      renderWho();
      show('final');
    }
  });
  show('workspace');
  renderWho();
  client.connect();
}

function restart() {
  if (ui.client) ui.client.close();
  ui.client = null;
  ui.me = null;
  ui.open = null;
  ui.consultations = [];
  ui.presence.clear();
  $('messages').replaceChildren();
  $('access-token').value = '';
  $('refresh-token').value = '';
  setNotice(null);
  applyLanguage();
  show('login');
}

function wire() {
  $('lang-switch').addEventListener('click', () => {
    ui.lang = ui.lang === 'zh' ? 'en' : 'zh';
    applyLanguage();
  });
  $('login-button').addEventListener('click', () => {
    start($('access-token').value.trim(), $('refresh-token').value.trim(), null);
  });
  $('restart').addEventListener('click', restart);
  $('logout').addEventListener('click', () => {
    if (ui.client) ui.client.logout().catch((e) => console.warn('logout failed', e));
  });
  $('reload-list').addEventListener('click', refreshList);
  $('new-consultation').addEventListener('click', async () => {
    const doctor = $('new-doctor').value.trim();
    if (!doctor) return;
    try {
      const c = await ui.client.createConsultation(doctor);
      $('new-doctor').value = '';
      await refreshList();
      openConsultation(ui.consultations.find((x) => x.id === c.id) || c);
    } catch (e) {
      console.warn('create failed', e);
      setNotice({ key: 'request_failed' });
    }
  });
  $('close-consultation').addEventListener('click', async () => {
    if (!ui.open) return;
    try {
      await ui.client.closeConsultation(ui.open.id);
      await refreshList();
    } catch (e) {
      console.warn('close failed', e);
      setNotice({ key: 'request_failed' });
    }
  });
  const sendNow = () => {
    const body = $('composer').value;
    if (!ui.open || !body.trim()) return;
    ui.client.send(ui.open.id, body);
    $('composer').value = '';
  };
  $('send').addEventListener('click', sendNow);
  $('composer').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendNow();
    }
  });
}

/** Read the launcher fragment, then remove it from the address bar (and from history). */
function readLauncher() {
  const h = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (!h.get('access_token')) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return { access: h.get('access_token'), refresh: h.get('refresh_token') || '', open: h.get('consultation') };
}

wire();
applyLanguage();
const launch = readLauncher();
let saved = null;
try { saved = JSON.parse(sessionStorage.getItem(STORE_TOKENS) || 'null'); } catch (_) { saved = null; }
if (launch) {
  start(launch.access, launch.refresh, launch.open);
} else if (saved && saved.access) {
  start(saved.access, saved.refresh || '', null);
} else {
  show('login');
}
document.body.dataset.ready = 'true';
// Exposed for native wrappers and the browser test: read-only view of the client state.
Object.defineProperty(window, 'consultKiosk', { value: Object.freeze({ ui, isFinalClose, TEXT }) });
