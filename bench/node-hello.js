// Node's http module for bench/run: "Hello World", or with argv[3] = BYTES a
// constant body of that many bytes ('x', one Buffer made at start-up).
// Listens on 127.0.0.1, port from argv[2] (0 = a free one); prints the port.
// With argv[4] = CERT.pem and argv[5] = KEY.pem: the https module on them
// (TLS 1.2 and 1.3, node's defaults otherwise).
const fs = require('fs');
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
const server = process.argv[5]
  ? require('https').createServer({
      cert: fs.readFileSync(process.argv[4]),
      key: fs.readFileSync(process.argv[5]),
      minVersion: 'TLSv1.2',
    }, handler)
  : require('http').createServer(handler);
server.keepAliveTimeout = 75000;
server.listen(+(process.argv[2] || 0), '127.0.0.1', 4096, () => {
  console.log('listening on ' + server.address().port);
});
