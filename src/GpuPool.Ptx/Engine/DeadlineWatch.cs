using System.Diagnostics;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Stops launches that run past their deadlines: one timer for all of them, looking every <see cref="Period"/>, so that
/// a launch pays two writes to a slot of its thread's for its deadline rather than a timer of its own (which costs about
/// as much as launching an empty kernel) or an entry in a shared table. A launch stops within a period of its deadline.
/// </summary>
internal static class DeadlineWatch
{
    public static readonly TimeSpan Period = TimeSpan.FromMilliseconds(20);

    private static readonly Lock Gate = new();

    /// <summary>One slot per thread that has launched (and one more for each launch begun inside another on its thread).</summary>
    private static readonly List<Slot> Slots = [];

    private static readonly Timer Watch = new(_ => Look(), null, Period, Period);

    [ThreadStatic]
    private static Slot? _mine;

    /// <summary>Watches <paramref name="control"/> until the returned handle is disposed; no watch for an infinite deadline.</summary>
    public static Registration Start(LaunchControl control, TimeSpan deadline)
    {
        if (deadline == Timeout.InfiniteTimeSpan)
        {
            return default;
        }

        GC.KeepAlive(Watch);
        var slot = _mine ??= NewSlot();
        if (Volatile.Read(ref slot.Control) is not null)
        {
            // A launch inside a launch on this thread (no kernel does it today): a slot of its own, gone at its end.
            slot = NewSlot();
            slot.Nested = true;
        }

        // The deadline first, then the launch: the watch reads the launch, then a deadline at least as new as it.
        Volatile.Write(ref slot.Deadline, Stopwatch.GetTimestamp() + (long)(deadline.TotalSeconds * Stopwatch.Frequency));
        Volatile.Write(ref slot.Control, control);
        return new Registration(slot);
    }

    private static Slot NewSlot()
    {
        var slot = new Slot();
        lock (Gate)
        {
            Slots.Add(slot);
        }

        return slot;
    }

    private static void Look()
    {
        var now = Stopwatch.GetTimestamp();
        lock (Gate)
        {
            foreach (var slot in Slots)
            {
                if (Volatile.Read(ref slot.Control) is { } control && now >= Volatile.Read(ref slot.Deadline))
                {
                    control.DeadlinePassed = true;
                    Volatile.Write(ref control.Stop, 1);
                }
            }
        }
    }

    internal sealed class Slot
    {
        public LaunchControl? Control;
        public long Deadline;
        public bool Nested;
    }

    public readonly struct Registration : IDisposable
    {
        private readonly Slot? _slot;

        internal Registration(Slot slot) => _slot = slot;

        public void Dispose()
        {
            if (_slot is not null)
            {
                Volatile.Write(ref _slot.Control, null);
                if (_slot.Nested)
                {
                    lock (Gate)
                    {
                        Slots.Remove(_slot);
                    }
                }
            }
        }
    }
}
