// App shell: top bar (navigation, connection indicator, language, logout),
// the routed view, and the softphone panel that outlives every navigation.
import './style.css';
import { h, mount } from './dom';
import { t, lang, setLang, onLangChange, type Key } from './i18n';
import { api, setUnauthorizedHandler, type User } from './api';
import { navigate, onNavigate, rerender, startRouter, currentPath, type View } from './router';
import { currentUser, setCurrentUser, homePath, isStaff } from './session';
import { phone } from './phone/softphone';
import { createPhonePanel, connLabel, reasonText } from './phone/panel';
import { loginView } from './views/login';
import { myCallsView } from './views/myCalls';
import { callDetailsView } from './views/callDetails';
import { connectionView } from './views/connection';
import { agentsView } from './views/admin/agents';
import { webrtcView } from './views/admin/webrtc';
import { callsView } from './views/admin/calls';
import { liveView } from './views/admin/live';
import { trunksView } from './views/admin/trunks';
import { didsView } from './views/admin/dids';
import { dialplanView } from './views/admin/dialplan';
import { pbxView } from './views/admin/pbx';

const app = document.getElementById('app') as HTMLElement;
const topbar = h('header', { class: 'topbar', testid: 'topbar' });
const navbar = h('div', { class: 'navbar' });
const main = h('main', { id: 'main', class: 'content', testid: 'main', tabindex: '-1' });
const phoneSlot = h('div', { class: 'phone-slot' });
const skip = h('a', { href: '#main', class: 'skip-link' });
app.append(skip, topbar, navbar, h('div', { class: 'layout' }, main, phoneSlot));

let phonePanel: HTMLElement | null = null;

interface NavItem {
  path: string;
  key: Key;
  staff?: boolean;
  /** Admins only (the API answers 403 to others). */
  admin?: boolean;
}

const NAV: NavItem[] = [
  { path: '/phone', key: 'nav.myCalls' },
  { path: '/call-details', key: 'nav.callDetails' },
  { path: '/connection', key: 'nav.connection' },
  { path: '/admin/agents', key: 'nav.agents', staff: true },
  { path: '/admin/calls', key: 'nav.calls', staff: true },
  { path: '/admin/live', key: 'nav.live', staff: true },
  { path: '/admin/webrtc', key: 'nav.webrtc', staff: true },
  { path: '/admin/trunks', key: 'nav.trunks', staff: true, admin: true },
  { path: '/admin/dids', key: 'nav.dids', staff: true, admin: true },
  { path: '/admin/dialplan', key: 'nav.dialplan', staff: true, admin: true },
  { path: '/admin/pbx', key: 'nav.pbx', staff: true, admin: true },
];

function connIndicator(): HTMLElement {
  const dot = h('span', { class: 'dot', 'aria-hidden': 'true' });
  const label = h('span', { class: 'conn-text' });
  const el = h('div', { class: 'conn', testid: 'conn-indicator', role: 'status', 'aria-live': 'polite', title: '' }, dot, label);
  phone.subscribe((s) => {
    el.dataset.state = s.conn;
    el.className = `conn conn-${s.conn}`;
    const reason = reasonText(s.connReason);
    label.textContent = connLabel(s.conn);
    el.title = reason;
    el.setAttribute('aria-label', `${t('conn.label')}: ${connLabel(s.conn)}${reason ? ` — ${reason}` : ''}`);
  });
  return el;
}

function renderTopbar(): void {
  const user = currentUser();
  skip.textContent = lang() === 'es' ? 'Saltar al contenido' : 'Skip to content';
  const langBtn = h('button', {
    type: 'button', class: 'btn btn-ghost btn-small', testid: 'lang-switch', 'aria-label': t('lang.switchLabel'), lang: lang() === 'es' ? 'en' : 'es',
    onclick: () => setLang(lang() === 'es' ? 'en' : 'es'),
  }, t('lang.switch'));
  const brand = h('a', { href: user ? homePath(user) : '/login', 'data-link': true, class: 'brand' },
    h('span', { class: 'logo', 'aria-hidden': 'true' }, 'C'), t('app.name'));
  if (!user) {
    mount(topbar, brand, h('div', { class: 'spacer' }), langBtn);
    navbar.replaceChildren();
    navbar.hidden = true;
    return;
  }
  const path = currentPath();
  const items = NAV.filter((n) => (!n.staff || isStaff(user)) && (!n.admin || user.role === 'admin'));
  const nav = h('nav', { class: 'nav', 'aria-label': t('nav.main') },
    items.map((n) => h('a', {
      href: n.path, 'data-link': true, class: 'nav-link', testid: `nav-${n.path.split('/').pop()}`,
      'aria-current': path === n.path ? 'page' : undefined,
    }, t(n.key))));
  const logout = h('button', { type: 'button', class: 'btn btn-ghost btn-small', testid: 'logout', onclick: () => void doLogout() }, t('nav.logout'));
  navbar.hidden = false;
  mount(navbar, nav);
  mount(topbar, brand, h('div', { class: 'spacer' }), connIndicator(),
    h('div', { class: 'user-chip', testid: 'user-chip' },
      h('span', { class: 'user-name' }, user.name),
      h('span', { class: 'user-role muted' }, t(`role.${user.role}` as Key))),
    langBtn, logout);
}

function redirect(path: string): View {
  return {
    render() {
      queueMicrotask(() => navigate(path, true));
    },
  };
}

const notFound: View = {
  render(root) {
    root.append(h('section', { class: 'card' }, h('h1', null, t('notFound.title')),
      h('a', { href: homePath(), 'data-link': true, class: 'btn' }, t('notFound.back'))));
  },
};

function resolve(path: string): View {
  const user = currentUser();
  if (!user) return path === '/login' ? loginView(enterApp) : redirect('/login');
  if (path === '/login' || path === '/' || path === '') return redirect(homePath(user));
  switch (path) {
    case '/phone':
      return myCallsView();
    case '/call-details':
      return callDetailsView();
    case '/connection':
      return connectionView(!!user.sip);
  }
  if (isStaff(user)) {
    switch (path) {
      case '/admin/agents':
        return agentsView();
      case '/admin/webrtc':
        return webrtcView();
      case '/admin/calls':
        return callsView();
      case '/admin/live':
        return liveView();
    }
  }
  if (user.role === 'admin' && path === '/admin/trunks') return trunksView();
  if (user.role === 'admin' && path === '/admin/dids') return didsView();
  if (user.role === 'admin' && path === '/admin/dialplan') return dialplanView();
  if (user.role === 'admin' && path === '/admin/pbx') return pbxView();
  return notFound;
}

function enterApp(user: User): void {
  setCurrentUser(user);
  if (!phonePanel) {
    phonePanel = createPhonePanel();
    phoneSlot.append(phonePanel);
  }
  app.classList.add('logged-in');
  // Users without a SIP account get the "no SIP account" state and can still
  // use the manual connection form.
  void phone.startAuto();
  renderTopbar();
  navigate(homePath(user), true);
}

function leaveApp(): void {
  phone.stop();
  setCurrentUser(null);
  phonePanel?.remove();
  phonePanel = null;
  app.classList.remove('logged-in');
  renderTopbar();
  navigate('/login', true);
}

async function doLogout(): Promise<void> {
  try {
    await api.logout();
  } catch {
    // The session may already be gone; leave anyway.
  }
  leaveApp();
}

setUnauthorizedHandler(() => {
  if (currentUser()) leaveApp();
});

onNavigate(() => renderTopbar());
onLangChange(() => {
  renderTopbar();
  rerender();
});

async function boot(): Promise<void> {
  let user: User | null = null;
  try {
    user = (await api.me()).user;
  } catch {
    user = null;
  }
  if (user) {
    setCurrentUser(user);
    phonePanel = createPhonePanel();
    phoneSlot.append(phonePanel);
    app.classList.add('logged-in');
    void phone.startAuto();
  }
  renderTopbar();
  startRouter(main, resolve);
}

void boot();
