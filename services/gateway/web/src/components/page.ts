// The shape every page component has: its element, and what to stop when
// the user leaves it.
export interface Page {
  el: HTMLElement;
  destroy?: () => void;
}
