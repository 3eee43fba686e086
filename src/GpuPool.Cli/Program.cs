using System.CommandLine;
using GpuPool.Cli.Commands;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Spectre.Console;

var root = new RootCommand("gpupool: lend GPUs over the network, whole or in slices")
{
    DemoCommand.Create(),
    UpCommand.Create(),
    LeaseCommand.Create(),
    LsCommand.Create(),
};

try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(20), EnableDefaultExceptionHandler = false });
}
catch (GpuPoolException ex)
{
    // One sentence, no stack trace: what happened and, where we know, what to do.
    var hint = ex.Code == ErrorCode.Unavailable ? " Is `gpupool up` running, and is --scheduler right?" : "";
    AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}{hint}");
    return 1;
}
catch (ArgumentException ex)
{
    AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
    return 2;
}
catch (IOException ex)
{
    AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
    return 1;
}
