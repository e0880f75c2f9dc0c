# One BEAM bench node: the twin of pymesh's shell/_bench/_node.py.
#
#   ERL_EPMD_PORT=P elixir --sname NAME --cookie C --erl "-kernel inet_dist_use_interface {127,0,0,1}" node.exs
#
# The driver (`pymesh bench`) writes one command a line on stdin; the node answers one line
# "ok key=value ..." (or "error ..."). Same commands, same payloads, same counts, one message
# per send, and the receiver really receives each message. Every node serves the peer side
# from the start: :sink, :bench_server (a GenServer) and :pgw (a pg watcher). Timestamps that
# cross OS processes are :os.system_time(:nanosecond), as time.time_ns() on the pymesh side.

defmodule Bench.Sink do
  def loop(count, from, n) do
    receive do
      {:msg, _i, _payload} ->
        c = count + 1
        if c == n, do: send(from, {:done, c})
        loop(c, from, n)

      {:ping, f, x} ->
        send(f, {:pong, x})
        loop(count, from, n)

      {:start, f, nn} ->
        loop(0, f, nn)

      :stop ->
        :ok
    end
  end
end

defmodule Bench.Server do
  use GenServer
  def init(s), do: {:ok, s}
  def handle_call(:ping, _from, s), do: {:reply, :pong, s}
end

defmodule Bench.PGWatch do
  def loop do
    receive do
      {:watch, from, group} ->
        {ref, _} = :pg.monitor(group)
        send(from, :watching)
        watch(ref, from, group)
    end
  end

  defp watch(ref, from, group) do
    receive do
      {^ref, :join, ^group, _pids} ->
        send(from, {:seen, :os.system_time(:nanosecond)})
        watch(ref, from, group)

      {^ref, :leave, ^group, _pids} ->
        watch(ref, from, group)

      {:unwatch, f} ->
        :pg.demonitor(ref)
        send(f, :unwatched)
        loop()
    end
  end
end

defmodule Bench.DregListener do
  # :global has no registration events: the origin's register_name returning is the moment
  # every node holds the name (it commits on all of them first). Kept for symmetry only.
  def loop, do: receive(do: (_ -> loop()))
end

defmodule Bench do
  @small %{"key" => "value", "n" => 42}

  def payload("small"), do: @small
  def payload("1k"), do: :binary.copy(<<0>>, 1024)
  def payload("64k"), do: :binary.copy(<<0>>, 65536)

  defp pct(samples, q) do
    s = Enum.sort(samples)
    Enum.at(s, min(length(s) - 1, trunc(length(s) * q)))
  end

  defp f(x), do: :erlang.float_to_binary(x / 1, decimals: 2)

  defp sink_of(peer), do: :rpc.call(String.to_atom(peer), Process, :whereis, [:sink])

  defp idle, do: receive(do: (_ -> :ok))

  # The send loop as the BEAM runs it fastest: a tail-recursive function (no closure
  # per message, as Enum.each has; no result list, as a comprehension builds).
  defp blast(_target, _payload, i, n) when i > n, do: :ok

  defp blast(target, payload, i, n) do
    send(target, {:msg, i, payload})
    blast(target, payload, i + 1, n)
  end

  def run(["connect" | peers]) do
    for p <- peers, do: true = Node.connect(String.to_atom(p))
    :ok = :global.sync()
    "nodes=#{length(Node.list())}"
  end

  def run(["throughput", peer, pname, n]) do
    n = String.to_integer(n)
    payload = payload(pname)
    target = sink_of(peer)
    send(target, {:start, self(), n})
    t0 = System.monotonic_time(:nanosecond)
    blast(target, payload, 1, n)
    receive do: ({:done, _} -> :ok)
    t1 = System.monotonic_time(:nanosecond)
    "msgs_per_s=#{f(n / ((t1 - t0) / 1.0e9))}"
  end

  def run(["rtt", peer, m]) do
    m = String.to_integer(m)
    target = sink_of(peer)
    me = self()

    samples =
      for i <- 1..m do
        t0 = System.monotonic_time(:nanosecond)
        send(target, {:ping, me, i})
        receive do: ({:pong, ^i} -> :ok)
        System.monotonic_time(:nanosecond) - t0
      end

    "p50_us=#{f(pct(samples, 0.5) / 1000)} p99_us=#{f(pct(samples, 0.99) / 1000)}"
  end

  def run(["call", peer, m]) do
    m = String.to_integer(m)
    dest = {:bench_server, String.to_atom(peer)}

    samples =
      for _ <- 1..m do
        t0 = System.monotonic_time(:nanosecond)
        :pong = GenServer.call(dest, :ping)
        System.monotonic_time(:nanosecond) - t0
      end

    "p50_us=#{f(pct(samples, 0.5) / 1000)} p99_us=#{f(pct(samples, 0.99) / 1000)}"
  end

  def run(["registry", keys]) do
    # in a process of its own: the registry links to whoever registers, and its
    # shutdown at the end of the round must not take the command loop with it
    k = String.to_integer(keys)
    me = self()

    {pid, ref} =
      spawn_monitor(fn ->
        name = :"bench_registry_#{System.unique_integer([:positive])}"
        {:ok, _} = Registry.start_link(keys: :unique, name: name)
        t0 = System.monotonic_time(:nanosecond)
        Enum.each(1..k, fn i -> {:ok, _} = Registry.register(name, i, nil) end)
        t1 = System.monotonic_time(:nanosecond)
        Enum.each(1..k, fn i -> [{_, _}] = Registry.lookup(name, i) end)
        t2 = System.monotonic_time(:nanosecond)
        ^k = Registry.count(name)
        send(me, {:registry, self(), t1 - t0, t2 - t1})
      end)

    receive do
      {:registry, ^pid, reg_ns, look_ns} ->
        receive do: ({:DOWN, ^ref, _, _, _} -> :ok)
        "register_per_s=#{f(k / (reg_ns / 1.0e9))} lookup_per_s=#{f(k / (look_ns / 1.0e9))}"

      {:DOWN, ^ref, _, _, reason} ->
        raise "registry round failed: #{inspect(reason)}"
    end
  end

  def run(["global", names, rnd]) do
    g = String.to_integer(names)
    t0 = System.monotonic_time(:nanosecond)

    pids =
      for i <- 1..g do
        pid = spawn(fn -> idle() end)
        :yes = :global.register_name({:n, rnd, i}, pid)
        pid
      end

    t1 = System.monotonic_time(:nanosecond)
    Enum.each(pids, &send(&1, :stop))
    Process.sleep(200)
    "register_us=#{f((t1 - t0) / g / 1000)} nodes=#{length(Node.list()) + 1}"
  end

  def run(["pg", peer, joins, rnd]) do
    j = String.to_integer(joins)
    group = {:bench_pg, rnd}
    watcher = {:pgw, String.to_atom(peer)}
    send(watcher, {:watch, self(), group})
    receive do: (:watching -> :ok)
    pids = for _ <- 1..j, do: spawn(fn -> idle() end)

    samples =
      for pid <- pids do
        t0 = :os.system_time(:nanosecond)
        :ok = :pg.join(group, pid)
        receive do: ({:seen, t1} -> (t1 - t0) / 1000)
      end

    send(watcher, {:unwatch, self()})
    receive do: (:unwatched -> :ok)
    Enum.each(pids, &send(&1, :stop))
    "p50_us=#{f(pct(samples, 0.5))} p99_us=#{f(pct(samples, 0.99))}"
  end

  def run(["spawn", k]) do
    k = String.to_integer(k)
    :erlang.garbage_collect()
    m0 = :erlang.memory(:total)
    t0 = System.monotonic_time(:nanosecond)
    pids = for _ <- 1..k, do: spawn(fn -> idle() end)
    t1 = System.monotonic_time(:nanosecond)
    Process.sleep(10)
    m1 = :erlang.memory(:total)
    Enum.each(pids, &send(&1, :bye))
    Process.sleep(50)
    "per_s=#{f(k / ((t1 - t0) / 1.0e9))} bytes_per_process=#{f((m1 - m0) / k)}"
  end

  def run(["form", seed, others]) do
    want = String.to_integer(others)
    :ok = :net_kernel.monitor_nodes(true)
    if Atom.to_string(Node.self()) != seed, do: true = Node.connect(String.to_atom(seed))
    wait_nodes(want)
    t = :os.system_time(:nanosecond)
    :net_kernel.monitor_nodes(false)
    "t_ns=#{t} nodes=#{length(Node.list())}"
  end

  def run(["dreg_start", members]) do
    # the BEAM side of the distributed-registry workload is :global (see the driver)
    want = String.to_integer(members) - 1
    wait_nodes(want)
    :ok = :global.sync()
    "members=#{length(Node.list()) + 1}"
  end

  def run(["dreg_register", names, spacing_ms, rnd]) do
    n = String.to_integer(names)
    spacing = String.to_integer(spacing_ms)

    times =
      for i <- 1..n do
        pid = spawn(fn -> idle() end)
        t0 = :os.system_time(:nanosecond)
        :yes = :global.register_name({:k, rnd, i}, pid)
        t1 = :os.system_time(:nanosecond)
        Process.sleep(spacing)
        {t0, t1}
      end

    "t0_ns=#{Enum.map_join(times, ",", &elem(&1, 0))} t1_ns=#{Enum.map_join(times, ",", &elem(&1, 1))}"
  end

  def run(["nodedown", peer, rate, flow_s]) do
    :ok = :net_kernel.monitor_nodes(true)
    peer_atom = String.to_atom(peer)
    target = sink_of(peer)
    rate = String.to_integer(rate)
    flow = spawn_link(fn -> flow(target, rate, System.monotonic_time(:millisecond), 0) end)
    flow_ms = round(String.to_float(flow_s) * 1000)

    receive do
      {:nodedown, ^peer_atom} -> raise "false nodedown of #{peer} while the flow ran"
    after
      flow_ms -> :ok
    end

    IO.puts("stop_now")

    receive do
      {:nodedown, ^peer_atom} -> :ok
    after
      30_000 -> raise "no nodedown within 30 s"
    end

    t_down = :os.system_time(:nanosecond)
    Process.unlink(flow)
    Process.exit(flow, :kill)
    :net_kernel.monitor_nodes(false)
    "t_down_ns=#{t_down} false_downs=0"
  end

  defp flow(target, rate, t0, sent) do
    due = div((System.monotonic_time(:millisecond) - t0) * rate, 1000)
    payload = @small
    sent = send_n(target, payload, sent, due)
    Process.sleep(1)
    flow(target, rate, t0, sent)
  end

  defp send_n(_target, _payload, sent, due) when sent >= due, do: sent

  defp send_n(target, payload, sent, due) do
    send(target, {:msg, sent, payload})
    send_n(target, payload, sent + 1, due)
  end

  defp wait_nodes(want) do
    if length(Node.list()) < want do
      receive do
        {:nodeup, _} -> wait_nodes(want)
      after
        60_000 -> raise "only #{length(Node.list())} of #{want} nodes after 60 s"
      end
    end
  end

  def loop do
    case IO.gets("") do
      :eof ->
        :ok

      {:error, _} ->
        :ok

      line ->
        case String.split(line) do
          [] ->
            loop()

          ["quit"] ->
            :ok

          words ->
            answer =
              try do
                "ok " <> run(words)
              rescue
                e -> "error " <> String.replace(Exception.message(e), "\n", " ")
              catch
                kind, reason -> "error #{kind}: #{inspect(reason)}"
              end

            IO.puts(answer)
            loop()
        end
    end
  end
end

{:ok, _} = :pg.start_link()
Process.register(spawn(fn -> Bench.Sink.loop(0, nil, 0) end), :sink)
Process.register(spawn(fn -> Bench.PGWatch.loop() end), :pgw)
{:ok, _} = GenServer.start(Bench.Server, nil, name: :bench_server)
IO.puts("ready #{Node.self()} #{System.pid()}")
Bench.loop()
System.halt(0)
