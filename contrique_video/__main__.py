from contrique_video.cli import main

main()
