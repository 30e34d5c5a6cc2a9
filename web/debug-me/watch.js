// The watch page of a debug-me session: the user's terminal drawn by xterm.js.
import '@xterm/xterm/css/xterm.css';
import { Terminal } from '@xterm/xterm';

const terminal = new Terminal({ screenReaderMode: true, disableStdin: true });
terminal.open(document.getElementById('terminal'));
