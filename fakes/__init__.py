"""Stand-ins for the outside world (Slack's Web API, the Packet API, moto's EC2 behind a fault
proxy, a sender that signs requests as Slack does) shared by the demo, the tests and the
benchmarks. Product packages never import them: only `bot.demo` does, to tell its story without
a workspace or a provider."""
