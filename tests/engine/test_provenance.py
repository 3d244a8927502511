"""A record names the code it was trained with: the commit from git, or read from the .git files on a
machine that has none (a GPU box the checkout was copied to)."""

from fastseed.engine.provenance import read_commit


def test_commit_is_read_from_the_git_files_without_git(tmp_path):
    sha, other = "a" * 40, "b" * 40
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{other} refs/heads/dev\n{sha} refs/heads/main\n")
    assert read_commit(tmp_path / "repo") == sha  # packed ref
    (git / "refs" / "heads" / "main").write_text(other + "\n")
    assert read_commit(tmp_path / "repo") == other  # a loose ref wins over the packed one
    # a worktree: .git is a file naming its git folder, whose refs live in the common folder
    tree = git / "worktrees" / "wt"
    tree.mkdir(parents=True)
    (tree / "HEAD").write_text("ref: refs/heads/main\n")
    (tree / "commondir").write_text("../..\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {tree}\n")
    assert read_commit(tmp_path / "wt") == other
    (git / "HEAD").write_text(sha + "\n")  # detached
    assert read_commit(tmp_path / "repo") == sha
    assert read_commit(tmp_path) is None  # no .git at all: "unknown", not an error
