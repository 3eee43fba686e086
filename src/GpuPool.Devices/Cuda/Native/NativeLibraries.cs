using System.Runtime.InteropServices;

namespace GpuPool.Devices.Cuda.Native;

/// <summary>
/// Loads the driver's libraries from a configurable place and binds the <c>LibraryImport</c>s of this assembly to
/// them. A library is loaded once per process; its imports stay bound to it for the process's life.
/// </summary>
internal static class NativeLibraries
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, nint> Loaded = new(StringComparer.Ordinal);
    private static bool _resolverSet;

    /// <summary>
    /// Loads <paramref name="path"/> (a file name the loader searches for, or a path) as the library that imports of
    /// <paramref name="importName"/> bind to. False with the loader's reason, in a few words, when it cannot.
    /// </summary>
    public static bool TryLoad(string importName, string path, out string error)
    {
        lock (Gate)
        {
            error = "";
            if (Loaded.ContainsKey(importName))
            {
                return true;
            }

            if (!_resolverSet)
            {
                NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
                _resolverSet = true;
            }

            try
            {
                Loaded[importName] = NativeLibrary.Load(path);
                return true;
            }
            catch (DllNotFoundException ex)
            {
                error = LoaderReason(ex.Message, path);
                return false;
            }
            catch (BadImageFormatException ex)
            {
                error = ex.Message;
                return false;
            }
        }
    }

    public static bool IsLoaded(string importName)
    {
        lock (Gate)
        {
            return Loaded.ContainsKey(importName);
        }
    }

    /// <summary>
    /// The loader's own words from .NET's DllNotFoundException, whose first line is general advice and whose next
    /// lines are dlerror()'s, each starting with the path it tried.
    /// </summary>
    internal static string LoaderReason(string message, string path)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var reasons = lines.Skip(1)
            .Select(l => l.StartsWith(path + ":", StringComparison.Ordinal) ? l[(path.Length + 1)..].Trim() : l)
            .Where(l => l.Length > 0)
            .Distinct(StringComparer.Ordinal)
            .ToArray();
        return reasons.Length > 0 ? string.Join("; ", reasons) : lines.FirstOrDefault() ?? "unknown loader error";
    }

    private static nint Resolve(string libraryName, System.Reflection.Assembly assembly, DllImportSearchPath? searchPath)
    {
        lock (Gate)
        {
            // Zero lets the runtime load it the usual way, which finds nothing better for a library we did not load.
            return Loaded.GetValueOrDefault(libraryName);
        }
    }
}
