// Node's ws package (bench/node_modules, installed by bench/run) echoing
// every WebSocket message, for bench/run.  No permessage-deflate.  Plain
// HTTP gets "Hello World".  Listens on 127.0.0.1, port from argv[2] (0 = a
// free one); prints the port.
const http = require('http');
const { WebSocketServer } = require('ws');
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('Hello World');
});
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.keepAliveTimeout = 75000;
server.listen(+(process.argv[2] || 0), '127.0.0.1', 4096, () => {
  console.log('listening on ' + server.address().port);
});
