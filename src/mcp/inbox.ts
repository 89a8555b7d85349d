// The compact inbox summary appended to tool results (upstream's `formatInbox`, dist/cli/mcp/inbox.js).

export interface Inbox {
  readonly unreadChannels?: ReadonlyArray<{ readonly channelName: string; readonly unreadCount: number }>
  readonly mentions?: ReadonlyArray<{ readonly agentName: string; readonly channelName: string; readonly text: string }>
  readonly unreadDms?: ReadonlyArray<{ readonly from: string; readonly unreadCount: number }>
  readonly recentReactions?: ReadonlyArray<{ readonly emoji: string; readonly channelName: string; readonly agentName: string }>
}

const normalise = (name: string): string => name.trim().replace(/^@/, "").toLowerCase()

/** Empty when nothing is pending; the agent's own mentions, DMs and reactions are left out. */
export const formatInbox = (inbox: Inbox, selfName: string | undefined): string => {
  const self = selfName === undefined ? undefined : normalise(selfName)
  const notSelf = (name: string) => self === undefined || normalise(name) !== self
  const lines = ["--- Pending Messages ---"]
  if (inbox.unreadChannels?.length) {
    lines.push("Unread channels:")
    for (const channel of inbox.unreadChannels) lines.push(`  #${channel.channelName}: ${channel.unreadCount} unread`)
  }
  const mentions = inbox.mentions?.filter((mention) => notSelf(mention.agentName)) ?? []
  if (mentions.length > 0) {
    lines.push("Mentions:")
    for (const mention of mentions) lines.push(`  @${mention.agentName} in #${mention.channelName}: "${mention.text}"`)
  }
  const dms = inbox.unreadDms?.filter((dm) => notSelf(dm.from)) ?? []
  if (dms.length > 0) {
    lines.push("Unread DMs:")
    for (const dm of dms) lines.push(`  From ${dm.from}: ${dm.unreadCount} unread`)
  }
  const reactions = inbox.recentReactions?.filter((reaction) => notSelf(reaction.agentName)) ?? []
  if (reactions.length > 0) {
    lines.push("Reactions (informational; no response required):")
    for (const reaction of reactions) {
      lines.push(`  :${reaction.emoji}: on your message in #${reaction.channelName} by @${reaction.agentName}`)
    }
  }
  return lines.length === 1 ? "" : lines.join("\n")
}
