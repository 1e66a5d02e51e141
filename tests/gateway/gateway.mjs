// A test peer for salesbot's real WeChat path: the official Wechaty puppet-service gateway
// (PuppetServer, plaintext gRPC) in front of the official mock puppet.
//
// Usage: node gateway.mjs --port 8788 --token insecure_<uuid> [--self-id rep] [--self-name 小王] [--tls]
//        [--scan]   the account logs in by QR code: start shows a code and waits for "scan" / "login"
//        node gateway.mjs --ports 8788,8789 --token ... --self-id rep   one account per port, in one
//        process (Node starts once: several accounts on a busy machine); the accounts are rep-0,
//        rep-1, ..., every event names its "port" and a command picks its account with "port"
//
// Control channel: one JSON object per line. Commands arrive on stdin; events leave on stdout.
//   in : {"cmd":"contact","id":"c1","name":"张三","friend":false}     create a contact (friend: already one)
//        {"cmd":"friend_request","id":"c1","hello":"你好"}             c1 asks the account to be friends
//        {"cmd":"unfriend","id":"c1"}                                  c1 deletes the account
//        {"cmd":"unfriend","id":"c1","error":"ret=-44"}                ... and sends fail with that text
//        {"cmd":"fail_sends","id":"c1","error":"ret=-1"}               sends to c1 fail, still a friend
//        {"cmd":"say","from":"c1","text":"太贵了"}                      c1 writes to the account
//        {"cmd":"self_say","to":"c1","text":"/stage 意向"}            the rep types on their phone
//        {"cmd":"scan","status":"waiting"|"scanned"|"timeout"}       a QR code step (waiting: a new code)
//        {"cmd":"login"} / {"cmd":"logout"}                          the account logs in / out
//   out: {"event":"listening","port":8788}                           the gRPC server is up
//        {"event":"started"} / {"event":"stopped"}                   the bot called start / stop
//        {"event":"accepted","id":"c1"}                              the bot accepted c1's request
//        {"event":"sent","to":"c1","text":"...","id":"m1"}           the bot sent a text
//        {"event":"code","qrcode":"https://..."}                      a login QR code was shown (--scan)
//        {"event":"sent_file","to":"c1","name":"a.pdf","size":1839,"mediaType":"application/pdf","id":"m2"}
//        {"event":"sent_url","to":"c1","url":"https://...","title":"...","description":"...","id":"m3"}
//        {"event":"sent_mini_program","to":"c1","appid":"wx...","title":"...","pagePath":"...","id":"m4"}
//        {"event":"error","message":"..."}                           a command failed
//
// The mock puppet needs four fixes to behave like a real puppet service (see GatewayPuppet).
import readline from 'node:readline'
import { parseArgs } from 'node:util'
import * as PUPPET from 'wechaty-puppet'
import { PuppetMock } from 'wechaty-puppet-mock'
import { PuppetServer } from 'wechaty-puppet-service'

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    ports: { type: 'string' },
    token: { type: 'string' },
    'self-id': { type: 'string', default: 'rep-self' },
    'self-name': { type: 'string', default: '小王' },
    'confirm-after-accept': { type: 'boolean', default: true },
    tls: { type: 'boolean', default: false }, // TLS on: what a plaintext client meets by mistake
    scan: { type: 'boolean', default: false }, // log in by QR code instead of at once
  },
})

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')

let nextMessage = 0
const newMessageId = () => `gw-msg-${process.pid}-${++nextMessage}`

class GatewayPuppet extends PuppetMock {
  constructor (selfId, selfName, port) {
    super()
    this.selfId = selfId
    this.selfName = selfName
    this.port = port
  }

  friendships = new Map()
  friends = new Set()
  sendErrors = new Map() // contact id -> what a failed send to them says, when not the default

  async onStart () {
    await super.onStart()
    const selfId = this.selfId
    if (!this.mocker.cacheContactPayload.has(selfId)) {
      this.mocker.createContact({ id: selfId, name: this.selfName, friend: false })
      // WeChat's 文件传输助手, where reps type commands by default
      this.mocker.createContact({ id: 'filehelper', name: '文件传输助手', friend: true })
      this.friends.add('filehelper')
    }
    emit({ event: 'started', port: this.port })
    // the mock never logs in nor emits `ready` by itself
    setImmediate(() => {
      if (args.scan) {
        if (!this.isLoggedIn) showCode(this)
        return
      }
      if (!this.isLoggedIn) this.login(selfId)
      this.emit('ready', { data: 'ready' })
    })
  }

  async onStop () {
    await super.onStop()
    emit({ event: 'stopped', port: this.port })
  }

  // the mock returns no message id; a real puppet does, and the bot records it
  async messageSendText (conversationId, text) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    if (this.sendErrors.has(conversationId)) throw new Error(this.sendErrors.get(conversationId))
    if (!this.friends.has(conversationId)) throw new Error(`${conversationId} is not a friend`)
    const id = newMessageId()
    this.mocker.MessageMock.create({
      id,
      talkerId: this.currentUserId,
      listenerId: conversationId,
      text,
      timestamp: Date.now(),
      type: PUPPET.types.Message.Text,
    })
    emit({ event: 'sent', to: conversationId, text, id, port: this.port })
    this.emit('message', { messageId: id }) // puppets echo the account's own sends
    return id
  }

  // the mock sends files without an id and drops links and mini programs: report each, as a real
  // puppet would deliver it (a payload the client can load, no echo: puppets echo texts)
  async messageSendFile (conversationId, fileBox) {
    this.checkSend(conversationId)
    const buffer = await fileBox.toBuffer()
    return this.delivered(conversationId, PUPPET.types.Message.Attachment, {
      event: 'sent_file', name: fileBox.name, size: buffer.length, mediaType: fileBox.mediaType,
    })
  }

  async messageSendUrl (conversationId, payload) {
    this.checkSend(conversationId)
    const { url, title, description, thumbnailUrl } = payload
    return this.delivered(conversationId, PUPPET.types.Message.Url, {
      event: 'sent_url', url, title, description, thumbnailUrl,
    })
  }

  async messageSendMiniProgram (conversationId, payload) {
    this.checkSend(conversationId)
    const { appid, username, title, pagePath } = payload
    return this.delivered(conversationId, PUPPET.types.Message.MiniProgram, {
      event: 'sent_mini_program', appid, username, title, pagePath,
    })
  }

  checkSend (conversationId) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    if (this.sendErrors.has(conversationId)) throw new Error(this.sendErrors.get(conversationId))
    if (!this.friends.has(conversationId)) throw new Error(`${conversationId} is not a friend`)
  }

  delivered (conversationId, type, event) {
    const id = newMessageId()
    this.mocker.MessageMock.create({
      id, talkerId: this.currentUserId, listenerId: conversationId, text: '', timestamp: Date.now(), type,
    })
    emit({ ...event, to: conversationId, id })
    return id
  }

  // the mock keeps the friend flag a contact was created with; a real puppet reports the current
  // state (cached by the server until the payload is marked dirty)
  async contactRawPayload (id) {
    const raw = await super.contactRawPayload(id)
    return { ...raw, friend: this.friends.has(id) }
  }

  // the mock answers only {id}; a real puppet gives the whole request
  async friendshipRawPayload (id) {
    return this.friendships.get(id) ?? { id }
  }

  async friendshipAccept (friendshipId) {
    const request = this.friendships.get(friendshipId)
    if (!request) throw new Error(`no friendship ${friendshipId}`)
    this.friends.add(request.contactId)
    emit({ event: 'accepted', id: request.contactId, port: this.port })
    if (args['confirm-after-accept']) {
      // some puppets report the new friendship once more, as a Confirm
      const confirmId = `${friendshipId}-confirm`
      this.friendships.set(confirmId, { ...request, id: confirmId, type: PUPPET.types.Friendship.Confirm })
      setTimeout(() => this.emit('friendship', { friendshipId: confirmId }), 50)
    }
  }
}

const ports = (args.ports ?? args.port).split(',').map(Number)
const puppets = new Map()
const servers = ports.map((port, i) => {
  const selfId = args.ports ? `${args['self-id']}-${i}` : args['self-id']
  const puppet = new GatewayPuppet(selfId, args['self-name'], port)
  puppets.set(port, puppet)
  return new PuppetServer({
    endpoint: `127.0.0.1:${port}`,
    puppet,
    token: args.token,
    tls: { disable: !args.tls },
  })
})

let nextCode = 0
const SCAN_STATUS = {
  waiting: PUPPET.types.ScanStatus.Waiting,
  scanned: PUPPET.types.ScanStatus.Scanned,
  timeout: PUPPET.types.ScanStatus.Timeout,
}
function showCode (puppet) {
  const qrcode = `https://login.weixin.qq.com/l/gateway-${process.pid}-${++nextCode}`
  puppet.mocker.scan(qrcode, PUPPET.types.ScanStatus.Waiting)
  emit({ event: 'code', qrcode })
}

// each command acts on the account of its "port" (the first one when absent)
let puppet
const commands = {
  scan ({ status }) {
    if (status === 'waiting') return showCode(puppet)
    if (!(status in SCAN_STATUS)) throw new Error(`unknown scan status ${status}`)
    puppet.mocker.scan('', SCAN_STATUS[status])
  },
  async login () {
    await puppet.login(puppet.selfId)
    puppet.emit('ready', { data: 'ready' })
  },
  async logout () {
    await puppet.logout('logged out on the phone')
  },
  contact ({ id, name, friend }) {
    puppet.mocker.createContact({ id, name, friend: Boolean(friend) })
    if (friend) puppet.friends.add(id)
  },
  unfriend ({ id, error }) {
    // the customer deletes the rep: WeChat says nothing; later sends fail (with `error` as the
    // failure's text when given: puppets word it in ways no pattern can know)
    puppet.friends.delete(id)
    if (error) puppet.sendErrors.set(id, error)
  },
  fail_sends ({ id, error }) {
    puppet.sendErrors.set(id, error)
  },
  friend_request ({ id, hello }) {
    const friendshipId = `fr-${id}-${Date.now()}`
    puppet.friendships.set(friendshipId, {
      id: friendshipId,
      contactId: id,
      hello: hello ?? '',
      timestamp: Date.now(),
      type: PUPPET.types.Friendship.Receive,
      ticket: 'ticket',
    })
    puppet.emit('friendship', { friendshipId })
  },
  say ({ from, text }) {
    const id = newMessageId()
    puppet.mocker.MessageMock.create({
      id, talkerId: from, listenerId: puppet.currentUserId, text, timestamp: Date.now(),
      type: PUPPET.types.Message.Text,
    })
    puppet.emit('message', { messageId: id })
  },
  self_say ({ to, text }) {
    const id = newMessageId()
    puppet.mocker.MessageMock.create({
      id, talkerId: puppet.currentUserId, listenerId: to, text, timestamp: Date.now(),
      type: PUPPET.types.Message.Text,
    })
    puppet.emit('message', { messageId: id })
  },
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return
  try {
    const command = JSON.parse(line)
    const handler = commands[command.cmd]
    if (!handler) throw new Error(`unknown command ${command.cmd}`)
    puppet = puppets.get(command.port ?? ports[0])
    if (!puppet) throw new Error(`no account on port ${command.port}`)
    Promise.resolve(handler(command)).catch((e) => emit({ event: 'error', message: String(e && e.message ? e.message : e) }))
  } catch (e) {
    emit({ event: 'error', message: String(e && e.message ? e.message : e) })
  }
})
process.stdin.on('end', () => process.exit(0))

for (const [i, server] of servers.entries()) {
  await server.start()
  emit({ event: 'listening', port: ports[i] })
}
