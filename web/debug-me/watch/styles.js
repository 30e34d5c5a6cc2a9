// xterm.js writes the styles it computes (cell sizes, theme colours, the scroll area) into
// <style> elements, which the page's `style-src 'self'` refuses: the terminal would draw
// without them and every change would be a CSP violation. Rather than relax the policy, the
// <style> elements xterm.js creates become <xterm-style> elements whose text goes into a
// constructed stylesheet (CSSOM, which the policy allows), adopted by the document while the
// element is in it. Only this page's document is changed, and only for the name "style".

/** An element standing in for one of xterm.js's <style> elements. */
class XtermStyle extends HTMLElement {
  constructor() {
    super();
    this.sheet = new CSSStyleSheet();
    this.css = '';
  }

  get textContent() {
    return this.css;
  }

  set textContent(text) {
    this.css = String(text ?? '');
    this.sheet.replaceSync(this.css);
  }

  connectedCallback() {
    if (!document.adoptedStyleSheets.includes(this.sheet)) {
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, this.sheet];
    }
  }

  disconnectedCallback() {
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== this.sheet);
  }
}

/** Makes `document.createElement('style')` give an <xterm-style>, before xterm.js runs. */
export function adoptXtermStyles(document) {
  if (!customElements.get('xterm-style')) customElements.define('xterm-style', XtermStyle);
  const create = document.createElement.bind(document);
  document.createElement = (name, options) =>
    String(name).toLowerCase() === 'style' ? create('xterm-style') : create(name, options);
}
