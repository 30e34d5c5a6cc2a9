// The /verify page: each chosen log file is verified in a Web Worker, nothing is uploaded.
const worker = new Worker('/dist/verify-worker.js', { type: 'module' });
const verdicts = document.getElementById('verdicts');
worker.onmessage = ({ data }) => {
  const item = document.createElement('li');
  item.textContent = `${data.name}: ${data.verdict}`;
  verdicts.append(item);
};
document.getElementById('files').addEventListener('change', (event) => {
  for (const file of event.target.files) worker.postMessage(file);
});
