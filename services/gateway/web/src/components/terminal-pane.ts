// A terminal pane for one host: xterm.js renders ANSI colours, carriage
// returns and progress bars as a terminal would. Panes exist only for hosts
// the user opened; the run view buffers the others.
import { Terminal, type ITheme } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { h, setText } from '../dom';
import { theme, type Theme } from '../theme';
import { stateBadge, setBadge } from './state-badge';

const themes: Record<Theme, ITheme> = {
  dark: { background: '#0d1117', foreground: '#d1d7e0', cursor: '#d1d7e0', selectionBackground: '#264f78' },
  light: { background: '#fbfbfd', foreground: '#1f2328', cursor: '#1f2328', selectionBackground: '#b6d7ff',
    black: '#1f2328', white: '#6e7781', brightWhite: '#8c959f', yellow: '#9a6700', brightYellow: '#7d4e00' },
};

export class TerminalPane {
  readonly el: HTMLElement;
  private readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly badge: HTMLElement;
  private readonly resize: ResizeObserver;
  private fitPending = false;

  constructor(host: string, state: string, logURL: string, onClose: () => void) {
    this.badge = stateBadge(state);
    const screen = h('div', { class: 'term-screen' });
    const close = h('button', { type: 'button', class: 'icon', 'data-close-host': host, tip: 'common.close', on: { click: onClose } }, '×');
    const log = h('a', { href: logURL, download: true, class: 'button small' });
    setText(log, 'run.download_host_log');
    this.el = h('div', { class: 'term', 'data-host': host },
      h('div', { class: 'term-head' }, h('strong', null, host), this.badge, h('span', { class: 'spacer' }), log, close), screen);
    this.term = new Terminal({
      convertEol: true, // commands without a PTY end lines with \n only
      disableStdin: true,
      cursorBlink: false,
      cursorInactiveStyle: 'none',
      scrollback: 5000,
      fontSize: 13,
      rows: 12,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
      theme: themes[theme()],
    });
    this.term.loadAddon(this.fit);
    this.term.open(screen);
    this.resize = new ResizeObserver(() => this.refit());
    this.resize.observe(screen);
  }

  write(data: string | Uint8Array): void {
    this.term.write(data);
  }

  setState(state: string): void {
    setBadge(this.badge, state);
  }

  setTheme(t: Theme): void {
    this.term.options.theme = themes[t];
  }

  private refit(): void {
    if (this.fitPending) return;
    this.fitPending = true;
    requestAnimationFrame(() => {
      this.fitPending = false;
      if (this.el.isConnected) this.fit.fit();
    });
  }

  dispose(): void {
    this.resize.disconnect();
    this.term.dispose();
    this.el.remove();
  }
}
