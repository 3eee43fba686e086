namespace GpuPool.Testing.Time;

/// <summary>
/// Waits for what a fired fake-clock timer set going on another thread (an awaited delay's continuation, a store
/// write): polls a condition until it holds. The bound only turns a hang into a failure naming what never came;
/// no test passes or fails by how fast the machine is.
/// </summary>
public static class Until
{
    private static readonly TimeSpan HangBound = TimeSpan.FromSeconds(30);

    public static async Task TrueAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + HangBound;
        while (!await condition().ConfigureAwait(false))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"waited {HangBound.TotalSeconds:0} s (real time) until {what}");
            }

            await Task.Delay(5).ConfigureAwait(false);
        }
    }

    public static Task TrueAsync(Func<bool> condition, string what) => TrueAsync(() => Task.FromResult(condition()), what);

    /// <summary>Until a timer of <paramref name="clock"/> is due at <paramref name="due"/>: the work that makes it is parked, and advancing to it fires it.</summary>
    public static Task TimerDueAsync(ManualTimeProvider clock, DateTimeOffset due)
        => TrueAsync(() => clock.TimersDue().Contains(due), $"a timer is due at {due:HH:mm:ss.fff}");
}
