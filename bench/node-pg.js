// Node's http with the pg package from npm (bench/node_modules, installed by
// bench/run) for bench/run's pg scenario: one indexed primary-key select per
// request through a pg.Pool of 10 connections, a named (prepared) statement
// as owin.pg prepares its own.  The connection comes from libpq's
// environment variables, which pg reads too (PGHOST, PGPORT, PGUSER,
// PGDATABASE).  bigint comes back as a number, as owin.pg gives it.
//   GET /todo/ID   {"id":ID,"title":"todo ID","done":false} (404, or 500)
// Listens on 127.0.0.1, port from argv[2] (0 = a free one); prints the port.
const http = require('http');
const pg = require('pg');
pg.types.setTypeParser(20, (v) => parseInt(v, 10));
const pool = new pg.Pool({ max: 10 });
const SQL = 'select id, title, done from todos where id = $1';
const path = /^\/todo\/(\d+)$/;

const server = http.createServer((req, res) => {
  const m = path.exec(req.url);
  if (!m) {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('no such row\n');
    return;
  }
  pool.query({ name: 'todo', text: SQL, values: [m[1]] }).then((r) => {
    const row = r.rows[0];
    if (!row) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('no such row\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ id: row.id, title: row.title, done: row.done }));
  }, (err) => {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end('pg: ' + err.message + '\n');
  });
});
server.keepAliveTimeout = 75000;
server.listen(+(process.argv[2] || 0), '127.0.0.1', 4096, () => {
  console.log('listening on ' + server.address().port);
});
