"""One registry of chapters: every chapter has its files, and the README lists them all."""

from pathlib import Path

from chapters import CHAPTERS, readme_table

ROOT = Path(__file__).resolve().parents[1]


def test_every_chapter_has_a_page_a_lab_and_an_explanation():
    for c in CHAPTERS:
        for path in (c.page, f"labs/{c.slug}.py", f"content/{c.slug}.md"):
            assert (ROOT / path).exists(), path


def test_the_readme_lists_exactly_the_registered_chapters():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- chapters:start")[1].split("-->", 1)[1].split("<!-- chapters:end")[0]
    assert section.strip() == readme_table()


def test_no_legacy_pages_folder_next_to_the_entry_script():
    assert not (ROOT / "pages").exists(), "Streamlit would bypass app.py's navigation"
