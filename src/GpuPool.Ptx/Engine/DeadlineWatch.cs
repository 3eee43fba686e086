using System.Collections.Concurrent;
using System.Diagnostics;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Stops launches that run past their deadlines: one timer for all of them, looking every <see cref="Period"/>, so that
/// a launch pays a dictionary entry for its deadline rather than a timer of its own (which costs about as much as
/// launching an empty kernel). A launch stops within a period of its deadline.
/// </summary>
internal static class DeadlineWatch
{
    public static readonly TimeSpan Period = TimeSpan.FromMilliseconds(20);

    private static readonly ConcurrentDictionary<LaunchControl, long> Deadlines = new(ReferenceEqualityComparer.Instance);
    private static readonly Timer Watch = new(_ => Look(), null, Period, Period);

    /// <summary>Watches <paramref name="control"/> until the returned handle is disposed; no watch for an infinite deadline.</summary>
    public static Registration Start(LaunchControl control, TimeSpan deadline)
    {
        if (deadline == Timeout.InfiniteTimeSpan)
        {
            return default;
        }

        GC.KeepAlive(Watch);
        Deadlines[control] = Stopwatch.GetTimestamp() + (long)(deadline.TotalSeconds * Stopwatch.Frequency);
        return new Registration(control);
    }

    private static void Look()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var (control, deadline) in Deadlines)
        {
            if (now >= deadline)
            {
                control.DeadlinePassed = true;
                Volatile.Write(ref control.Stop, 1);
            }
        }
    }

    public readonly struct Registration(LaunchControl? control) : IDisposable
    {
        public void Dispose()
        {
            if (control is not null)
            {
                Deadlines.TryRemove(control, out _);
            }
        }
    }
}
