namespace GpuPool.Testing.Time;

/// <summary>
/// Awaits what a test set going on another thread. The bound only turns a hang into a failure naming what never
/// came; no test passes or fails by how fast the machine is.
/// </summary>
public static class Within
{
    private static readonly TimeSpan HangBound = TimeSpan.FromSeconds(10);

    public static async Task Bound(Task task, string what)
    {
        try
        {
            await task.WaitAsync(HangBound);
        }
        catch (TimeoutException)
        {
            throw Hung(what);
        }
    }

    public static async Task<T> Bound<T>(Task<T> task, string what)
    {
        try
        {
            return await task.WaitAsync(HangBound);
        }
        catch (TimeoutException)
        {
            throw Hung(what);
        }
    }

    private static TimeoutException Hung(string what) => new($"waited {HangBound.TotalSeconds:0} s (real time) until {what}");
}
