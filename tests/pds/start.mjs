// The AT Protocol reference PDS with an in-memory PLC directory, on 127.0.0.1 only,
// for autopost's end-to-end tests. Data lives in a fresh temporary folder that is
// removed on exit. Versions are pinned in package.json (the last @atproto/pds release
// that runs on Node 20).
//
// Usage: node start.mjs
// Environment (all optional):
//   PDS_PORT                 PDS port (default 0: a free one)
//   PLC_PORT                 PLC directory port (default 0: a free one)
//   PDS_ADMIN_PASSWORD       admin password, HTTP Basic user "admin" (default: random)
//   PDS_JWT_SECRET           HS256 secret of session tokens (default: random); set it
//                            to mint tokens in tests
//   PDS_RATE_LIMITS_ENABLED  "true" turns on the PDS's own (in-memory) rate limits
//   PDS_INVITE_REQUIRED      "true" requires invite codes for createAccount
//   PDS_READY_FILE           where to write the ready JSON (atomically) once serving
//   PDS_EXIT_ON_STDIN_EOF    "true": exit when stdin closes, so the server never outlives
//                            the process that started it, even one killed with SIGKILL
//   LOG_ENABLED              "true" for the PDS's own JSON logs (on stdout)
// Prints "PDS_READY {json}" once both servers answer, "PDS_STOPPED" on exit.
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const LOOPBACK = '127.0.0.1'

// Both servers call app.listen(port) without a host, which binds every interface and
// has no configuration knob: pin every listening socket to loopback instead.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const [first] = args
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, LOOPBACK)
  } else if (first && typeof first === 'object' && first.path === undefined) {
    args[0] = { ...first, host: LOOPBACK }
  }
  return listen.apply(this, args)
}

const flag = (name) => ['true', '1', 'yes'].includes((process.env[name] || '').toLowerCase())
const port = (name) => {
  const value = process.env[name]
  return value ? Number.parseInt(value, 10) : 0
}
const freePort = () =>
  new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, LOOPBACK, () => {
      const { port: free } = probe.address()
      probe.close(() => resolve(free))
    })
  })

const started = Date.now()
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'autopost-pds-'))
let plcServer = null
let pdsServer = null
let stopping = false

async function stop(reason, code = 0) {
  if (stopping) return
  stopping = true
  // Never hang on shutdown: whatever happens, leave within 5 s.
  setTimeout(() => process.exit(code), 5000).unref()
  try {
    if (pdsServer) await pdsServer.destroy()
    if (plcServer) await plcServer.destroy()
  } catch (err) {
    console.error(`PDS shutdown: ${err?.message ?? err}`)
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true })
    console.log(`PDS_STOPPED (${reason})`)
    process.exit(code)
  }
}

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => stop(signal))
if (flag('PDS_EXIT_ON_STDIN_EOF')) {
  process.stdin.on('end', () => stop('stdin closed'))
  process.stdin.on('error', () => stop('stdin error'))
  process.stdin.resume()
}

async function main() {
  const pds = await import('@atproto/pds')
  const plc = await import('@did-plc/server')
  const { Secp256k1Keypair } = await import('@atproto/crypto')

  const plcPort = port('PLC_PORT') || (await freePort())
  plcServer = plc.PlcServer.create({ db: plc.Database.mock(), port: plcPort })
  await plcServer.start()

  const pdsPort = port('PDS_PORT') || (await freePort())
  const rotationKey = await Secp256k1Keypair.create({ exportable: true })
  const adminPassword = process.env.PDS_ADMIN_PASSWORD || crypto.randomBytes(12).toString('hex')
  const env = {
    devMode: true, // plain-http public URL on localhost
    hostname: 'localhost',
    port: pdsPort,
    dataDirectory: dataDir,
    blobstoreDiskLocation: path.join(dataDir, 'blobs'),
    didPlcUrl: `http://${LOOPBACK}:${plcPort}`,
    serviceHandleDomains: ['.test'],
    inviteRequired: flag('PDS_INVITE_REQUIRED'),
    rateLimitsEnabled: flag('PDS_RATE_LIMITS_ENABLED'),
    adminPassword,
    jwtSecret: process.env.PDS_JWT_SECRET || crypto.randomBytes(16).toString('hex'),
    plcRotationKeyK256PrivateKeyHex: Buffer.from(await rotationKey.export()).toString('hex'),
    // Nothing outward: no relay crawlers; AppView, moderation, email left unset.
    crawlers: [],
  }
  pdsServer = await pds.PDS.create(pds.envToCfg(env), pds.envToSecrets(env))
  await pdsServer.start()

  const pdsUrl = `http://${LOOPBACK}:${pdsPort}`
  const health = await fetch(`${pdsUrl}/xrpc/_health`).then((r) => r.json())
  const info = {
    pdsUrl,
    plcUrl: env.didPlcUrl,
    pdsPort,
    plcPort,
    adminPassword,
    rateLimits: env.rateLimitsEnabled,
    pid: process.pid,
    startupMs: Date.now() - started,
    health,
  }
  const readyFile = process.env.PDS_READY_FILE
  if (readyFile) {
    fs.writeFileSync(`${readyFile}.tmp`, JSON.stringify(info))
    fs.renameSync(`${readyFile}.tmp`, readyFile)
  }
  console.log(`PDS_READY ${JSON.stringify(info)}`)
}

main().catch((err) => {
  console.error(`PDS failed to start: ${err?.stack ?? err}`)
  stop('start failed', 1)
})
