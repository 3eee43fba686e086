namespace GpuPool.Shim.Tests;

/// <summary>Files of the repository these tests read (the C header, the test PTX), found from the test's folder.</summary>
internal static class RepoFiles
{
    public static string Root { get; } = FindRoot();

    public static string Path(string relative) => System.IO.Path.Combine(Root, relative);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "GpuPool.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no GpuPool.sln above {AppContext.BaseDirectory}");
    }
}
