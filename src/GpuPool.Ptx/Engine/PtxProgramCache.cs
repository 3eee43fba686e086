using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Modules read (and checked) once per distinct text in a scope, by its SHA-256: a lease that loads the same module
/// again gets the kernels already compiled and the load's verdict at once. The scope is the caller's (the cpu backend
/// uses the lease), so that how long a load takes never tells one tenant what another has loaded. Entries are weak: a
/// module nobody has loaded any more is collected like anything else.
/// </summary>
public static class PtxProgramCache
{
    private static readonly ConcurrentDictionary<string, WeakReference<PtxModuleProgram>> Programs = new(StringComparer.Ordinal);
    private static readonly Lock Gate = new();
    private static int _loads;

    /// <summary>The program for <paramref name="ptx"/>, read now unless the same text was read before in <paramref name="scope"/>.</summary>
    public static PtxModuleProgram Get(string scope, string ptx)
    {
        var key = scope + ":" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(ptx)));
        if (Programs.TryGetValue(key, out var weak) && weak.TryGetTarget(out var cached))
        {
            return cached;
        }

        // Read outside any lock: two loads of a new text at once may both read it, and one of the two is kept.
        var program = PtxModuleProgram.Compile(ptx);
        lock (Gate)
        {
            if (Programs.TryGetValue(key, out weak) && weak.TryGetTarget(out cached))
            {
                return cached;
            }

            Programs[key] = new WeakReference<PtxModuleProgram>(program);
            if (++_loads % 64 == 0)
            {
                foreach (var (k, w) in Programs)
                {
                    if (!w.TryGetTarget(out _))
                    {
                        Programs.TryRemove(k, out _);
                    }
                }
            }
        }

        return program;
    }
}
