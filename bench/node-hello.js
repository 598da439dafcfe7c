// Node's http module answering "Hello World", for bench/run.
// Listens on 127.0.0.1, port from argv[2] (0 = a free one); prints the port.
const http = require('http');
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('Hello World');
});
server.keepAliveTimeout = 75000;
server.listen(+(process.argv[2] || 0), '127.0.0.1', 1024, () => {
  console.log('listening on ' + server.address().port);
});
