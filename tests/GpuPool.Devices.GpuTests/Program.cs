using System.Globalization;

namespace GpuPool.Devices.GpuTests;

/// <summary>
/// The built-in kernel comparison without a test runner, for a GPU machine that has no .NET SDK: publish this project
/// self-contained and run it there. Prints one line per kernel and exits 1 when any differs or the backend cannot start.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var seeds = args.Length > 0 && int.TryParse(args[0], CultureInfo.InvariantCulture, out var s) ? s : 3;
        var (backend, reason) = Gpu.TryBackend();
        if (backend is null)
        {
            Console.Error.WriteLine($"the cuda backend cannot start: {reason}");
            return 1;
        }

        var device = backend.Devices[0];
        Console.WriteLine($"{device.Name} ({device.Uuid}), driver for CUDA {backend.DriverVersion}; {seeds} random cases per kernel against the cpu backend");
        var failed = 0;
        foreach (var kernel in KernelComparison.Kernels)
        {
            for (var seed = 1; seed <= seeds; seed++)
            {
                var outcome = await KernelComparison.CompareAsync(device, KernelComparison.Make(kernel, new Random(KernelComparison.Seed(kernel) + seed)));
                failed += outcome.Failure is null ? 0 : 1;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{kernel,-28} seed {seed}  {outcome.Compared,9} values  max |diff| {outcome.MaxAbsDiff:E2}  {outcome.Failure ?? "ok"}"));
            }
        }

        backend.Dispose();
        Console.WriteLine(failed == 0 ? "all kernels match the cpu backend" : $"{failed} case(s) differ");
        return failed == 0 ? 0 : 1;
    }
}
