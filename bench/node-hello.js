// Node's http module for bench/run: "Hello World", or with argv[3] = BYTES a
// constant body of that many bytes ('x', one Buffer made at start-up).
// Listens on 127.0.0.1, port from argv[2] (0 = a free one); prints the port.
const http = require('http');
const size = +(process.argv[3] || 0);
const big = size ? Buffer.alloc(size, 'x') : null;
const handler = big
  ? (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': big.length });
      res.end(big);
    }
  : (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('Hello World');
    };
const server = http.createServer(handler);
server.keepAliveTimeout = 75000;
server.listen(+(process.argv[2] || 0), '127.0.0.1', 4096, () => {
  console.log('listening on ' + server.address().port);
});
