// The drawing of a log's chain: one mark per line, its shape and colour by kind (Seen, Entered,
// rejected Entered, control), laid out in rows that snake back and forth so that consecutive
// lines are always neighbours, with the hash-chain links drawn between the marks they join and
// the failing line ringed. Built with DOM methods only: nothing from a file is ever parsed as
// markup. Thousands of lines stay cheap: one element per mark and one path for all links.

const SVG = 'http://www.w3.org/2000/svg';
/** Width and height of one line's cell, in the drawing's units. */
const CELL = 12;
/** The most lines drawn; a longer log's drawing says where it stops. */
export const MAX_MARKS = 50_000;

/** What each kind of mark is called, in the legend and in each mark's title. */
export const KIND_NAMES = {
  seen: 'Seen (the user’s terminal output)',
  entered: 'Entered (typed by a developer or the user)',
  rejected: 'rejected Entered',
  control: 'control message (keys, consent, chat)',
  invalid: 'a line that is not a log message',
};

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/** The shape of a mark of `kind` centred at (x, y). */
function shape(kind, x, y) {
  const r = CELL * 0.34;
  switch (kind) {
    case 'seen':
      return svg('rect', { x: x - r, y: y - r, width: 2 * r, height: 2 * r });
    case 'entered':
      return svg('circle', { cx: x, cy: y, r });
    case 'invalid':
      return svg('rect', { x: x - r, y: y - r, width: 2 * r, height: 2 * r });
    case 'rejected':
      return svg('path', { d: `M${x - r} ${y - r}L${x + r} ${y + r}M${x + r} ${y - r}L${x - r} ${y + r}` });
    default:
      return svg('path', { d: `M${x} ${y - r}L${x + r} ${y}L${x} ${y + r}L${x - r} ${y}Z` });
  }
}

/** How many marks a row holds for a log of `n` lines: wider rows for longer logs. */
export function columnsFor(n) {
  return Math.max(1, Math.min(n, 100, Math.max(25, Math.ceil(Math.sqrt(n * 4)))));
}

/** The centre of the mark at position `at` (0-based) in rows of `columns`. */
export function centre(at, columns) {
  const row = Math.floor(at / columns);
  const inRow = at % columns;
  const column = row % 2 === 0 ? inRow : columns - 1 - inRow;
  return [column * CELL + CELL / 2, row * CELL + CELL / 2];
}

/** The title of one mark: its line, kind, side and links, and whether it is trusted. */
function markTitle(mark, failingLine) {
  const parts = [`line ${mark.line}: ${mark.kind === 'control' && mark.what ? mark.what : KIND_NAMES[mark.kind]}`];
  if (mark.side) parts.push(`from the ${mark.side}`);
  if (mark.follows !== null) parts.push(`follows line ${mark.follows}`);
  if (mark.followsEntered !== null) parts.push(`names line ${mark.followsEntered} as the last accepted Entered`);
  if (mark.line === failingLine) parts.push('verification fails here');
  else if (!mark.trusted) parts.push('not trusted: after the failure');
  return parts.join(', ');
}

/** A one-sentence description of the drawing, its accessible name. */
export function describe(marks, failingLine) {
  const counts = { seen: 0, entered: 0, rejected: 0, control: 0, invalid: 0 };
  for (const mark of marks) counts[mark.kind] += 1;
  const lines = marks.length === 1 ? '1 line' : `${marks.length} lines`;
  const failing = failingLine ? `; verification fails at line ${failingLine}` : '';
  const invalid = counts.invalid ? `, ${counts.invalid} ${counts.invalid === 1 ? 'line that is not a log message' : 'lines that are not log messages'}` : '';
  return `Chain of ${lines}: ${counts.seen} Seen, ${counts.entered} Entered, ${counts.rejected} rejected Entered, ${counts.control} control${invalid}${failing}`;
}

/** The legend: one entry per kind of mark, each with a small drawing of its shape. */
function legend() {
  const list = document.createElement('ul');
  list.className = 'chain-legend';
  const entries = [...Object.entries(KIND_NAMES), ['failing', 'the line where verification fails']];
  for (const [kind, name] of entries) {
    const item = document.createElement('li');
    const icon = svg('svg', { viewBox: `0 0 ${CELL} ${CELL}`, width: 14, height: 14, 'aria-hidden': 'true' });
    const mark = shape(kind === 'failing' ? 'seen' : kind, CELL / 2, CELL / 2);
    mark.setAttribute('class', `mark ${kind === 'failing' ? 'seen failing' : kind}`);
    icon.append(mark);
    item.append(icon, document.createTextNode(` ${name}`));
    list.append(item);
  }
  return list;
}

/**
 * The figure of one log's chain.
 * @param {import('./marks.js').Mark[]} allMarks every line's mark, in order
 * @param {number | null} failingLine the line the verdict names, if it failed
 */
export function drawChain(allMarks, failingLine) {
  const figure = document.createElement('figure');
  figure.className = 'chain';
  const marks = allMarks.slice(0, MAX_MARKS);
  const columns = columnsFor(marks.length);
  const rows = Math.max(1, Math.ceil(marks.length / columns));
  const drawing = svg('svg', {
    viewBox: `0 0 ${columns * CELL} ${rows * CELL}`,
    width: columns * CELL * 2,
    role: 'img',
    class: 'chain-drawing',
  });
  const description = describe(allMarks, failingLine);
  const title = svg('title');
  title.textContent = description;
  drawing.append(title);
  drawing.setAttribute('aria-label', description);

  const positionOf = new Map();
  marks.forEach((mark, at) => positionOf.set(mark.line, at));
  let chain = '';
  let entered = '';
  marks.forEach((mark, at) => {
    const [x, y] = centre(at, columns);
    for (const [to, dashed] of [[mark.follows, false], [mark.followsEntered, true]]) {
      const from = to === null ? undefined : positionOf.get(to);
      if (from === undefined || (dashed && to === mark.follows)) continue;
      const [fx, fy] = centre(from, columns);
      const segment = `M${fx} ${fy}L${x} ${y}`;
      if (dashed) entered += segment;
      else chain += segment;
    }
  });
  drawing.append(svg('path', { d: chain || 'M0 0', class: 'chain-links' }));
  drawing.append(svg('path', { d: entered || 'M0 0', class: 'chain-links entered-links' }));

  const group = svg('g', { class: 'marks' });
  marks.forEach((mark, at) => {
    const [x, y] = centre(at, columns);
    const failing = mark.line === failingLine;
    const element = shape(mark.kind, x, y);
    const classes = ['mark', mark.kind];
    if (failing) classes.push('failing');
    else if (!mark.trusted) classes.push('untrusted');
    element.setAttribute('class', classes.join(' '));
    element.setAttribute('data-line', String(mark.line));
    const markName = svg('title');
    markName.textContent = markTitle(mark, failingLine);
    element.append(markName);
    group.append(element);
    if (failing) {
      group.append(svg('circle', { cx: x, cy: y, r: CELL * 0.55, class: 'failing-ring', 'aria-hidden': 'true' }));
    }
  });
  drawing.append(group);

  const caption = document.createElement('figcaption');
  const activities = marks.filter((mark) => mark.kind === 'seen' || mark.kind === 'entered' || mark.kind === 'rejected');
  const linked = activities.some((mark) => mark.follows !== null || mark.followsEntered !== null);
  let how = 'Read left to right, then right to left on the next row.';
  if (linked) how += ' Lines join each activity to the one it follows in the chain (as signed: written in the log or, for a server’s log, recovered from the signatures); dashed lines to the last accepted Entered it names.';
  else if (activities.length > 1) how += ' No links between its activities could be established, so none are drawn.';
  const cut = allMarks.length > MAX_MARKS ? ` Only the first ${MAX_MARKS} lines are drawn.` : '';
  caption.textContent = `${description}. ${how}${cut}`;
  figure.append(drawing, caption, legend());
  return figure;
}
